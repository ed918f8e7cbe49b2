"""The upstream Exnaton API's shape, so an upstream client can switch its base URL to this service."""

from __future__ import annotations

from flask_smorest import Blueprint, abort

from api.responses import number, queries, settings, upstream_timestamp
from api.schemas import ApiErrorSchema, MeasurementArgs, UpstreamResponseSchema, resolve_moment

blp = Blueprint(
    "meterdata",
    __name__,
    description="Exnaton-compatible endpoint: `GET /meterdata/measurement` as the upstream API answers it "
    "(also under /api/v1)",
)
# Mounted at the root (as upstream) and under /api/v1: see api._register_blueprints.
V1_NAME, V1_PREFIX = "meterdata_v1", "/api/v1"


def build_response(args: dict) -> dict:
    limit = args["limit"]
    if limit > settings().max_measurement_limit:
        abort(
            422,
            message=f"limit is at most {settings().max_measurement_limit}.",
            errors={"query": {"limit": ["too large"]}},
        )
    rows = queries().measurement_readings(
        args["muid"],
        args["measurement"],
        resolve_moment(args["start"], "UTC"),
        resolve_moment(args["stop"], "UTC"),
        limit,
    )
    records: list[dict] = []
    for row in rows:
        stamp = upstream_timestamp(row["reading_at"])
        if not records or records[-1]["timestamp"] != stamp:
            records.append(
                {
                    "measurement": row["measurement"],
                    "timestamp": stamp,
                    "tags": {"muid": args["muid"], "quality": row["quality"]},
                }
            )
        records[-1][row["obis_code"]] = number(row["energy_kwh"])
    return {"data": records}


@blp.route("/meterdata/measurement")
@blp.arguments(MeasurementArgs, location="query", as_kwargs=False)
@blp.response(200, UpstreamResponseSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="A bad parameter")
def measurement(args):
    """Readings in the upstream format: `{"data": [...]}`, newest first, one record per timestamp.

    Each record: `measurement`, `timestamp` (`2023-02-28T23:45:00.000Z`), `tags` (`muid`, `quality`) and one
    key per OBIS code holding the kWh value, e.g. `"0100011D00FF": 0.0117`. Bounds without offset are UTC;
    `end` is accepted for `stop`, as in an older upstream version. At most `limit` timestamps, the newest.
    """
    return build_response(args)
