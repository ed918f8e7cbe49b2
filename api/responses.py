"""Helpers shared by the resources: content negotiation (CSV), time formats, the app's services."""

from __future__ import annotations

import csv
import io
import math
import typing as t
from datetime import UTC, datetime
from decimal import Decimal

from flask import Response, current_app, request
from flask_smorest import Blueprint, abort

if t.TYPE_CHECKING:
    from flask_smorest.pagination import PaginationParameters

    from api.config import Settings
    from api.queries import Queries


def queries() -> Queries:
    return current_app.extensions["exnaton"]["queries"]


def settings() -> Settings:
    return current_app.extensions["exnaton"]["settings"]


def wants_csv(args: dict) -> bool:
    if args.get("format"):
        return args["format"] == "csv"
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return (
        best == "text/csv"
        and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]
    )


def csv_documented(columns: list[str]):
    """Documents the CSV answer (``format=csv`` or ``Accept: text/csv``) beside the JSON one."""
    return Blueprint.doc(
        responses={
            200: {
                "content": {
                    "text/csv": {
                        "schema": {"type": "string", "example": ",".join(columns) + "\n"},
                    }
                }
            }
        }
    )


def check_page(pagination: PaginationParameters, total: int) -> None:
    """Sets the X-Pagination total; a page beyond the last one is a 404 (the first page always exists)."""
    pagination.item_count = total
    last_page = max(1, math.ceil(total / pagination.page_size))
    if pagination.page > last_page:
        abort(
            404,
            message=f"Page {pagination.page} is beyond the last page ({last_page}).",
            errors={"query": {"page": ["beyond the last page"]}},
        )


def csv_response(rows: list[dict], columns: list[str], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in rows)
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def _csv_value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def number(value: Decimal | None) -> float | int | None:
    """A JSON number: whole values as ints (the upstream writes 0, not 0.0), others as the nearest float."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def upstream_timestamp(moment: datetime) -> str:
    """The upstream's format: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
