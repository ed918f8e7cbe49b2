"""Meters, their 15-minute readings, energy per time bucket and daily completeness."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Response
from flask_smorest import Blueprint, abort

from api.responses import (
    check_page,
    csv_documented,
    csv_response,
    queries,
    settings,
    wants_csv,
)
from api.schemas import (
    ApiErrorSchema,
    CompletenessArgs,
    CompletenessSchema,
    EnergyArgs,
    EnergySchema,
    MetersArgs,
    MeterSchema,
    ReadingsArgs,
    ReadingSchema,
    resolve_moment,
)

blp = Blueprint("meters", __name__, url_prefix="/api/v1/meters", description="Meters and their energy data")
# Read at import: flask-smorest documents the cap in the OpenAPI spec.
MAX_PAGE_SIZE = int(os.environ.get("API_MAX_PAGE_SIZE", 5000))
MAX_METERS_PAGE_SIZE = 1000
READING_COLUMNS = ["obis_code", "reading_at", "energy_kwh", "quality"]
BUCKET_COLUMNS = [
    "obis_code",
    "start",
    "end",
    "energy_kwh",
    "reading_count",
    "expected_intervals",
    "completeness_pct",
]
DAY_COLUMNS = [
    "obis_code",
    "day",
    "expected_intervals",
    "received_intervals",
    "missing_intervals",
    "completeness_pct",
]
BUCKET_LENGTH = {
    "15min": timedelta(minutes=15),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=28),
}


def check_muid(muid: str) -> None:
    """A muid no meter can have (PostgreSQL text cannot even hold NUL) is unknown without a query."""
    if len(muid) > 100 or not muid.isprintable():
        abort(404, message="Unknown meter (muid).")


def meter_or_404(muid: str) -> dict:
    check_muid(muid)
    channels = queries().meter_channels(muid)
    if not channels:
        abort(404, message=f"Unknown meter (muid) {muid!r}.")
    return summarize(channels)[0]


def summarize(channels: list[dict]) -> list[dict]:
    """dim_meters has a row per meter and OBIS code; the API shows a meter with its channels."""
    meters: dict[str, dict] = {}
    for row in channels:
        meter = meters.setdefault(
            row["muid"],
            {"muid": row["muid"], "stream_name": row["stream_name"], "channels": [], "reading_count": 0},
        )
        meter["channels"].append(row)
        meter["reading_count"] += row["reading_count"] or 0
    for meter in meters.values():
        firsts = [c["first_reading_at"] for c in meter["channels"] if c["first_reading_at"]]
        lasts = [c["last_reading_at"] for c in meter["channels"] if c["last_reading_at"]]
        loads = [c["last_loaded_at"] for c in meter["channels"] if c["last_loaded_at"]]
        meter["first_reading_at"] = min(firsts, default=None)
        meter["last_reading_at"] = max(lasts, default=None)
        meter["last_loaded_at"] = max(loads, default=None)
    return list(meters.values())


def data_range(meter: dict | None, args: dict, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of the request; missing bounds default to the meter's own first and last reading (the
    meter is needed only then)."""
    start = resolve_moment(args.get("start"), tz) or meter["first_reading_at"]
    end = resolve_moment(args.get("end"), tz) or (
        meter["last_reading_at"] + timedelta(minutes=15) if meter["last_reading_at"] else None
    )
    if start is None or end is None:
        abort(404, message=f"Meter {meter['muid']!r} has no readings yet.")
    if start >= end:
        abort(
            422, message="'start' must be before 'end'.", errors={"query": {"end": ["must be after start"]}}
        )
    return start, end


@blp.route("")
@blp.arguments(MetersArgs, location="query", as_kwargs=False)
@blp.response(200, MeterSchema(many=True))
@blp.alt_response(404, schema=ApiErrorSchema, description="A page beyond the last one")
@blp.paginate(page_size=100, max_page_size=MAX_METERS_PAGE_SIZE)
def list_meters(args, pagination_parameters):
    """Meters, each with its OBIS channels (import/export) and data range.

    Ordered by muid, paginated (X-Pagination header); `muid_prefix` keeps the meters whose muid starts with
    it (any case).
    """
    prefix = args["muid_prefix"]
    check_page(pagination_parameters, queries().meter_count(prefix))
    channels = queries().meter_channels(
        muid_prefix=prefix, offset=pagination_parameters.first_item, limit=pagination_parameters.page_size
    )
    return summarize(channels)


@blp.route("/<string:muid>")
@blp.response(200, MeterSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="Unknown meter")
def get_meter(muid):
    """One meter."""
    return meter_or_404(muid)


@blp.route("/<string:muid>/readings")
@blp.arguments(ReadingsArgs, location="query", as_kwargs=False)
@blp.response(200, ReadingSchema(many=True), description="Readings in ascending time; CSV on request")
@blp.alt_response(404, schema=ApiErrorSchema, description="Unknown meter, or a page beyond the last one")
@blp.paginate(page_size=500, max_page_size=MAX_PAGE_SIZE)
@csv_documented(READING_COLUMNS)
def get_readings(args, muid, pagination_parameters):
    """15-minute readings of a meter in [start, end), ascending, paginated (X-Pagination header).

    Bounds are ISO 8601; a date or a date-time without offset is UTC; a missing bound is the meter's first
    or last reading. `page_size` is capped by the server (`API_MAX_PAGE_SIZE`).
    """
    check_muid(muid)
    meter = None if args.get("start") and args.get("end") else meter_or_404(muid)
    start, end = data_range(meter, args, "UTC")
    # PostgreSQL renders the page as JSON (no per-row Python work); CSV is made from the same page.
    body, total = queries().readings_page_json(
        muid, start, end, args.get("obis"), pagination_parameters.first_item, pagination_parameters.page_size
    )
    if not total and meter is None:
        meter_or_404(muid)  # nothing in range: an unknown meter is a 404, a known one an empty page
    check_page(pagination_parameters, total)
    if wants_csv(args):
        return csv_response(json.loads(body), READING_COLUMNS, f"{muid}-readings")
    return Response(body, mimetype="application/json")


@blp.route("/<string:muid>/energy")
@blp.arguments(EnergyArgs, location="query", as_kwargs=False)
@blp.response(200, EnergySchema, description="Energy per bucket; CSV on request")
@blp.alt_response(404, schema=ApiErrorSchema, description="Unknown meter")
@csv_documented(BUCKET_COLUMNS)
def get_energy(args, muid):
    """Energy per time bucket (15min, hour, day, week, month) in an IANA time zone, DST-correct.

    Every bucket overlapping [start, end) is listed, empty ones too, each whole (its sums cover the whole
    bucket), with the number of readings, the number of 15-minute intervals the bucket has (92 on a
    spring-forward day in Europe/Zurich) and completeness. Weeks start on Monday. Bounds without offset
    are local to `tz`. Answered from the marts (fct_energy_daily, fct_energy_hourly) wherever they can.
    """
    check_muid(muid)
    # With both bounds the meter is not read first: the query finds its channels (none: unknown meter).
    meter = None if args.get("start") and args.get("end") else meter_or_404(muid)
    tz = args.get("tz") or settings().default_timezone
    start, end = data_range(meter, args, tz)
    interval = args["interval"]
    obis = args.get("obis")
    channels = 1 if obis or meter is None else len(meter["channels"])
    expected_buckets = (end - start) / BUCKET_LENGTH[interval] * channels
    if expected_buckets > settings().max_buckets:
        abort(
            422,
            message=f"{int(expected_buckets)} buckets asked, at most {settings().max_buckets}: "
            "narrow the range or choose a longer interval.",
            errors={"query": {"interval": ["too many buckets for this range"]}},
        )
    # PostgreSQL renders the buckets as JSON (a year of days is 365 objects): no per-bucket Python work.
    buckets, _source = queries().energy_buckets_json(muid, interval, start, end, tz, obis)
    if buckets == "[]" and meter is None:
        meter_or_404(muid)  # no channel in the answer: an unknown meter is a 404
    if wants_csv(args):
        return csv_response(json.loads(buckets), BUCKET_COLUMNS, f"{muid}-energy-{interval}")
    zone = ZoneInfo(tz)
    head = {
        "muid": muid,
        "interval": interval,
        "tz": tz,
        "start": start.astimezone(zone).isoformat(),
        "end": end.astimezone(zone).isoformat(),
        "unit": "kWh",
    }
    return Response(json.dumps(head)[:-1] + ', "buckets": ' + buckets + "}", mimetype="application/json")


@blp.route("/<string:muid>/completeness")
@blp.arguments(CompletenessArgs, location="query", as_kwargs=False)
@blp.response(200, CompletenessSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="Unknown meter")
@csv_documented(DAY_COLUMNS)
def get_completeness(args, muid):
    """Per local day and OBIS code: expected 15-minute intervals (96, 92 or 100), received, missing, %."""
    meter = meter_or_404(muid)
    tz = args.get("tz") or settings().default_timezone
    start, end = data_range(meter, args, tz)
    if (end - start) / timedelta(days=1) * len(meter["channels"]) > settings().max_buckets:
        abort(422, message="The range has too many days.", errors={"query": {"start": ["range too long"]}})
    days = [
        {**row, "completeness_pct": float(row["completeness_pct"])}
        for row in queries().daily_completeness(muid, start, end, tz)
    ]
    if wants_csv(args):
        return csv_response(days, DAY_COLUMNS, f"{muid}-completeness")
    return {"muid": muid, "tz": tz, "days": days}
