"""Liveness and readiness."""

from __future__ import annotations

from flask_smorest import Blueprint

from api.responses import queries
from api.schemas import ApiErrorSchema, HealthSchema, ReadySchema

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


# Open even when API_KEYS is set: no security requirement, whatever the document's default.
OPEN = blp.doc(security=[])


@blp.route("/health")
@blp.response(200, HealthSchema)
@OPEN
def health():
    """The process is up (no database call)."""
    return {"status": "ok"}


@blp.route("/ready")
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ApiErrorSchema, description="The database is not reachable")
@OPEN
def ready():
    """The database answers; also tells when the marts were last loaded."""
    return {"status": "ready", "database": "reachable", "last_loaded_at": queries().last_loaded_at()}
