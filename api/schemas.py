"""Marshmallow schemas of the API: query arguments (validated, documented) and responses (with examples)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, available_timezones

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

OBIS_CODE = re.compile(r"^[0-9A-Fa-f]{12}$")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
EXAMPLE_MUID = "95ce3367-cbce-4a4d-bbe3-da082831d7bd"
KNOWN_ZONES = frozenset(available_timezones())
# No control characters (PostgreSQL text cannot even hold NUL).
PRINTABLE = validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="Must not contain control characters.")


# OpenAPI type of a Moment: a generated client gets a date or a date-time, not `Any`.
MOMENT_SCHEMA = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}


class Moment(fields.Field):
    """An ISO 8601 date (``2023-02-01``) or date-time (``2023-02-01T00:00:00Z``).

    Deserializes to ``date`` or ``datetime``: a bare date or a date-time without offset is local to the
    request's time zone, resolved by the view (``resolve_moment``).
    """

    def __init__(self, **kwargs) -> None:
        kwargs["metadata"] = {**MOMENT_SCHEMA, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    default_error_messages = {
        "invalid": "Not an ISO 8601 date or date-time, e.g. 2023-02-01 or 2023-02-01T00:00:00Z.",
        "range": "Must lie between 1970-01-01 and 2100-01-01.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not value.strip():
            raise self.make_error("invalid")
        text = value.strip()
        try:
            parsed = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError as exc:
            raise self.make_error("invalid") from exc
        probe = parsed if isinstance(parsed, datetime) else datetime.combine(parsed, time.min)
        probe = probe if probe.tzinfo else probe.replace(tzinfo=UTC)
        if not EARLIEST <= probe <= LATEST:
            raise self.make_error("range")
        return parsed


def resolve_moment(value: date | datetime | None, tz: str) -> datetime | None:
    """An aware instant: dates and offset-less date-times are read in ``tz``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(tz))


def _validate_obis(value: str) -> None:
    if not OBIS_CODE.match(value):
        raise ValidationError("Not an OBIS code of 12 hex digits, e.g. 0100011D00FF.")


def _check_order(data: dict, start_key: str = "start", end_key: str = "end") -> None:
    start, end = data.get(start_key), data.get(end_key)
    if start is None or end is None:
        return
    tz = ZoneInfo(data.get("tz") or "UTC")
    if resolve_moment(start, str(tz)) >= resolve_moment(end, str(tz)):
        raise ValidationError(f"'{start_key}' must be before '{end_key}'.", end_key)


class FormatArgs(Schema):
    """The `format` parameter of every endpoint that answers in CSV too."""

    format = fields.String(
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "Response format; `Accept: text/csv` works too", "example": "json"},
    )


class RangeArgs(FormatArgs):
    start = Moment(metadata={"description": "First instant (inclusive), ISO 8601", "example": "2023-02-01"})
    end = Moment(metadata={"description": "Last instant (exclusive), ISO 8601", "example": "2023-03-01"})

    @validates_schema
    def start_before_end(self, data, **kwargs):
        _check_order(data)


class TimezoneArgs(Schema):
    tz = fields.String(
        load_default=None,
        metadata={
            "description": "IANA time zone of buckets and of dates without offset",
            "example": "Europe/Zurich",
        },
    )

    @validates("tz")
    def known_zone(self, value, **kwargs):
        if value is None:
            return
        # A closed list: never a file look-up with a client's string (a 400-character name is an OSError).
        if value not in KNOWN_ZONES:
            raise ValidationError(f"Unknown IANA time zone {value[:64]!r}.")


class MetersArgs(Schema):
    muid_prefix = fields.String(
        load_default="",
        validate=[validate.Length(max=100), PRINTABLE],
        metadata={"description": "Only meters whose muid starts with this (any case)", "example": "95ce"},
    )


class ObisCode(fields.String):
    """An OBIS code of 12 hex digits, in any case, loaded in upper case as the marts store it."""

    def __init__(self, **kwargs) -> None:
        metadata = {"description": "Only this OBIS code (any case)", "example": "0100011D00FF"}
        super().__init__(validate=_validate_obis, metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        return super()._deserialize(value, attr, data, **kwargs).upper()


class ReadingsArgs(RangeArgs):
    obis = ObisCode()


class EnergyArgs(RangeArgs, TimezoneArgs):
    interval = fields.String(
        load_default="day",
        validate=validate.OneOf(["15min", "hour", "day", "week", "month"]),
        metadata={"description": "Bucket size; weeks start on Monday", "example": "day"},
    )
    obis = ObisCode()


class CompletenessArgs(RangeArgs, TimezoneArgs):
    pass


class MeasurementArgs(Schema):
    muid = fields.String(
        required=True, validate=[validate.Length(1, 100), PRINTABLE], metadata={"example": EXAMPLE_MUID}
    )
    measurement = fields.String(
        load_default="energy", validate=[validate.Length(1, 100), PRINTABLE], metadata={"example": "energy"}
    )
    start = Moment(
        required=True,
        metadata={"description": "First instant (inclusive), UTC when no offset", "example": "2023-02-01"},
    )
    stop = Moment(
        metadata={"description": "Last instant (exclusive), UTC when no offset", "example": "2023-03-01"}
    )
    end = Moment(metadata={"description": "Older name of `stop`", "example": "2023-03-01"})
    limit = fields.Integer(
        load_default=5000,
        validate=validate.Range(min=1),
        metadata={"description": "At most this many timestamps, newest first", "example": 5000},
    )

    @validates_schema
    def stop_given(self, data, **kwargs):
        if data.get("stop") is None and data.get("end") is None:
            raise ValidationError("'stop' (or 'end') is required.", "stop")
        if data.get("stop") is None:
            data["stop"] = data["end"]
        _check_order(data, "start", "stop")


# --- responses -------------------------------------------------------------------------------------


class ChannelSchema(Schema):
    obis_code = fields.String(metadata={"example": "0100011D00FF"})
    direction = fields.String(metadata={"description": "import, export or unknown", "example": "import"})
    first_reading_at = fields.DateTime(metadata={"example": "2023-02-01T00:00:00+00:00"})
    last_reading_at = fields.DateTime(metadata={"example": "2023-02-28T23:45:00+00:00"})
    reading_count = fields.Integer(metadata={"example": 2688})


class MeterSchema(Schema):
    muid = fields.String(metadata={"example": EXAMPLE_MUID})
    stream_name = fields.String(metadata={"example": "muid_1"})
    first_reading_at = fields.DateTime(allow_none=True, metadata={"example": "2023-02-01T00:00:00+00:00"})
    last_reading_at = fields.DateTime(allow_none=True, metadata={"example": "2023-02-28T23:45:00+00:00"})
    reading_count = fields.Integer(metadata={"example": 2688})
    last_loaded_at = fields.DateTime(allow_none=True, metadata={"example": "2026-11-25T03:00:00+00:00"})
    channels = fields.List(fields.Nested(ChannelSchema))


class ReadingSchema(Schema):
    obis_code = fields.String(metadata={"example": "0100011D00FF"})
    reading_at = fields.DateTime(
        metadata={"description": "Start of the 15-minute interval", "example": "2023-02-01T00:00:00+00:00"}
    )
    energy_kwh = fields.Float(metadata={"example": 0.0162})
    quality = fields.String(allow_none=True, metadata={"example": "measured"})


class BucketSchema(Schema):
    obis_code = fields.String(metadata={"example": "0100011D00FF"})
    start = fields.DateTime(
        metadata={
            "description": "Bucket start in the request's time zone, with its offset",
            "example": "2023-02-01T00:00:00+01:00",
        }
    )
    end = fields.DateTime(
        metadata={"description": "Bucket end (exclusive)", "example": "2023-02-02T00:00:00+01:00"}
    )
    energy_kwh = fields.Float(metadata={"example": 3.4821})
    reading_count = fields.Integer(metadata={"example": 96})
    expected_intervals = fields.Integer(
        metadata={"description": "15-minute intervals in the bucket (92/100 on DST days)", "example": 96}
    )
    completeness_pct = fields.Float(metadata={"example": 100.0})


class EnergySchema(Schema):
    muid = fields.String(metadata={"example": EXAMPLE_MUID})
    interval = fields.String(metadata={"example": "day"})
    tz = fields.String(metadata={"example": "Europe/Zurich"})
    start = fields.DateTime(
        metadata={"description": "First instant asked, in `tz`", "example": "2023-02-01T00:00:00+01:00"}
    )
    end = fields.DateTime(
        metadata={"description": "Last instant asked (exclusive)", "example": "2023-03-01T00:00:00+01:00"}
    )
    unit = fields.String(metadata={"example": "kWh"})
    buckets = fields.List(fields.Nested(BucketSchema))


class CompletenessDaySchema(Schema):
    obis_code = fields.String(metadata={"example": "0100011D00FF"})
    day = fields.Date(metadata={"description": "Local calendar day", "example": "2023-03-26"})
    expected_intervals = fields.Integer(metadata={"example": 92})
    received_intervals = fields.Integer(metadata={"example": 92})
    missing_intervals = fields.Integer(metadata={"example": 0})
    completeness_pct = fields.Float(metadata={"example": 100.0})


class CompletenessSchema(Schema):
    muid = fields.String(metadata={"example": EXAMPLE_MUID})
    tz = fields.String(metadata={"example": "Europe/Zurich"})
    days = fields.List(fields.Nested(CompletenessDaySchema))


class UpstreamRecordSchema(Schema):
    """One upstream record: OBIS codes are extra keys, e.g. ``"0100011D00FF": 0.0117``."""

    class Meta:
        unknown = "include"

    measurement = fields.String(metadata={"example": "energy"})
    timestamp = fields.DateTime(metadata={"example": "2023-02-28T23:45:00.000Z"})
    tags = fields.Dict(metadata={"example": {"muid": EXAMPLE_MUID, "quality": "measured"}})


class UpstreamResponseSchema(Schema):
    data = fields.List(
        fields.Dict(), metadata={"description": "Readings, newest first, in the upstream's exact shape"}
    )


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})


class ReadySchema(Schema):
    status = fields.String(metadata={"example": "ready"})
    database = fields.String(metadata={"example": "reachable"})
    last_loaded_at = fields.DateTime(allow_none=True, metadata={"example": "2026-11-25T03:00:00+00:00"})


class ApiErrorSchema(Schema):
    code = fields.Integer(metadata={"example": 422})
    status = fields.String(metadata={"example": "Unprocessable Entity"})
    message = fields.String(
        metadata={"example": "Invalid query parameter: start: Not an ISO 8601 date or date-time."}
    )
    errors = fields.Dict(metadata={"example": {"query": {"start": ["Not an ISO 8601 date or date-time."]}}})
