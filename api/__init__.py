"""Exnaton energy REST API: Flask app factory.

gunicorn "api:create_app()"      # PG* from the environment, or the embedded server when PGHOST is unset
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path

import psycopg
from flask import Flask, Response, jsonify, request, send_from_directory
from flask_cors import CORS
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from api.config import Settings, database_conninfo
from api.db import Database, DatabaseUnavailable
from api.queries import Queries
from api.schemas import ApiErrorSchema

# Data endpoints: they need an API key when API_KEYS is set, and carry the last load time.
DATA_PREFIXES = ("/api/v1/", "/meterdata/")
# Either header opens the data endpoints (OpenAPI: a list of alternatives).
SECURITY_REQUIREMENT = [{"bearer": []}, {"apiKey": []}]
LOADED_AT_HEADER = "X-Data-Loaded-At"
LOADED_AT_TTL_SECONDS = 5.0


class JsonErrorApi(Api):
    """flask-smorest's Api with every error as JSON `{code, status, message, errors}`."""

    ERROR_SCHEMA = ApiErrorSchema

    def handle_http_exception(self, error: HTTPException):
        payload, status, headers = super().handle_http_exception(error)
        payload["message"] = payload.get("message") or _message_of(payload.get("errors")) or error.description
        return payload, status, headers


def _message_of(errors: dict | None) -> str | None:
    """A readable one-liner naming the parameters, from marshmallow's nested errors."""
    if not errors:
        return None
    parts = []
    for location, fields in errors.items():
        if isinstance(fields, dict):
            parts += [
                f"{name}: {' '.join(map(str, msgs if isinstance(msgs, list) else [msgs]))}"
                for name, msgs in fields.items()
            ]
        else:
            parts.append(f"{location}: {fields}")
    return "Invalid parameter " + "; ".join(parts)


def create_app(overrides: dict | None = None) -> Flask:
    overrides = dict(overrides or {})
    settings = Settings(**{"conninfo": overrides.pop("conninfo", None) or database_conninfo(), **overrides})
    app = Flask(__name__)
    app.config.update(
        API_TITLE="Exnaton energy API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        # Swagger UI's assets come from the swagger-ui-bundle wheel, served here: /docs works offline.
        OPENAPI_SWAGGER_UI_URL="/docs-assets/",
        API_SPEC_OPTIONS={
            "info": {"description": _spec_description()},
            # Declared only when keys are needed, so that Swagger UI's "Authorize" sends one; the open
            # operations (health, ready) override it with no requirement.
            **({"security": SECURITY_REQUIREMENT} if settings.api_keys else {}),
        },
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    database = Database(settings)
    app.extensions["exnaton"] = {
        "settings": settings,
        "db": database,
        "queries": Queries(database, settings.marts_schema),
    }
    api = JsonErrorApi(app)
    _register_blueprints(api)
    _register_docs_assets(app)
    _register_dashboard(app)
    _register_security(app, api, settings)
    _register_loaded_at(app)
    app.register_error_handler(DatabaseUnavailable, _database_unavailable)
    app.register_error_handler(Exception, _unexpected_error)
    if settings.cors_origins:
        CORS(app, origins=settings.cors_origins, expose_headers=["X-Pagination", LOADED_AT_HEADER])
    return app


def _register_blueprints(api: Api) -> None:
    from api.resources import health, meterdata, meters, pipeline

    for blueprint in (meters.blp, meterdata.blp, health.blp, pipeline.blp):
        api.register_blueprint(blueprint)
    api.register_blueprint(meterdata.blp, name=meterdata.V1_NAME, url_prefix=meterdata.V1_PREFIX)


def _register_dashboard(app: Flask) -> None:
    from api.dashboard import blp

    app.register_blueprint(blp)


def _register_docs_assets(app: Flask) -> None:
    from swagger_ui_bundle import swagger_ui_path

    assets = Path(swagger_ui_path)

    @app.route("/docs-assets/<path:filename>")
    def docs_assets(filename: str):
        return send_from_directory(assets, filename, max_age=86400)


def _register_security(app: Flask, api: Api, settings: Settings) -> None:
    """Optional API keys (API_KEYS): `Authorization: Bearer <key>` or `X-API-Key: <key>` on data endpoints."""
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    if not settings.api_keys:
        return
    _document_unauthorized(api)
    keys = [key.encode() for key in settings.api_keys]

    @app.before_request
    def require_api_key():
        if request.method == "OPTIONS" or not request.path.startswith(DATA_PREFIXES):
            return None
        given = _presented_key()
        # Compare with every key, in constant time, so timing tells nothing about a key.
        matched = [hmac.compare_digest(given, key) for key in keys]
        if any(matched):
            return None
        return (
            jsonify(code=401, status="Unauthorized", message="A valid API key is required."),
            401,
            {"WWW-Authenticate": 'Bearer realm="exnaton"'},
        )


def _document_unauthorized(api: Api) -> None:
    """The 401 answer, on every operation that needs a key (the data paths), as the answer it really is."""
    unauthorized = {
        "description": "No valid API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    }
    # apispec holds the paths the blueprints registered; there is no public way to amend every operation.
    for path, operations in api.spec._paths.items():
        if path.startswith(DATA_PREFIXES):
            for operation in operations.values():
                if isinstance(operation, dict) and "responses" in operation:  # not the path's `parameters`
                    operation["responses"].setdefault("401", unauthorized)


def _presented_key() -> bytes:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip().encode()
    return request.headers.get("X-API-Key", "").encode()


def _register_loaded_at(app: Flask) -> None:
    cache = {"value": None, "at": 0.0}

    @app.after_request
    def add_loaded_at(response: Response) -> Response:
        if response.status_code != 200 or not request.path.startswith(DATA_PREFIXES):
            return response
        if time.monotonic() - cache["at"] > LOADED_AT_TTL_SECONDS:
            try:
                loaded_at = app.extensions["exnaton"]["queries"].last_loaded_at()
            except (DatabaseUnavailable, psycopg.errors.UndefinedTable):  # no marts before the first build
                return response
            cache.update(value=loaded_at.isoformat() if loaded_at else "", at=time.monotonic())
        if cache["value"]:
            response.headers[LOADED_AT_HEADER] = cache["value"]
        return response


def _database_unavailable(error: DatabaseUnavailable):
    return (
        jsonify(code=503, status="Service Unavailable", message=f"Database unavailable: {error}"),
        503,
        {"Retry-After": "5"},
    )


def _unexpected_error(error: Exception):
    if isinstance(error, HTTPException):
        return jsonify(code=error.code, status=error.name, message=error.description), error.code
    # Never a stack trace to the client; the log has it.
    from flask import current_app

    current_app.logger.exception("unhandled error")
    return jsonify(
        code=500, status="Internal Server Error", message="Unexpected error; it has been logged."
    ), 500


def _spec_description() -> str:
    return (
        "15-minute smart-meter energy readings, loaded by the Meltano pipeline and shaped by dbt. "
        "Data responses carry `X-Data-Loaded-At`, the time of the last successful load. Errors are JSON "
        "`{code, status, message, errors}`. When the server sets `API_KEYS`, data endpoints need "
        "`Authorization: Bearer <key>` or `X-API-Key: <key>`."
    )
