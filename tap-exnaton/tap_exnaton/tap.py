"""tap-exnaton: settings and stream list."""

from __future__ import annotations

import csv
import sys
import typing as t
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from singer_sdk import Tap
from singer_sdk import typing as th

from tap_exnaton.client import DEFAULT_CONCURRENCY, ExnatonSourceError, StateAsIsWriter
from tap_exnaton.streams import MeterDaysStream, MeterReadingsStream, config_datetime

DEFAULT_BASE_URL = (
    "https://exnaton-public-s3-bucket20230329123331528000000001.s3.eu-central-1.amazonaws.com/challenge"
)
DEFAULT_METERS = [
    {"stream_name": "muid_1", "muid": "95ce3367-cbce-4a4d-bbe3-da082831d7bd"},
    {"stream_name": "muid_2", "muid": "1db7649e-9342-4e04-97c7-f0ebb88ed1f8"},
]
# The one stream of every meter when stream_per_meter is false (and so the raw table's name).
FLEET_STREAM = "readings"


class MetersFailedError(ExnatonSourceError):
    """Some meters' sources failed (after retries); the other meters were loaded and bookmarked."""

    def __init__(self, failures: list[str], meter_count: int) -> None:
        lines = list(failures)
        if len(failures) > 1:
            lines.append(
                f"{len(failures)} of {meter_count} meters failed; the others were loaded and bookmarked"
            )
        super().__init__("\n".join(lines))


class TapExnaton(Tap):
    """Singer tap for Exnaton smart-meter energy readings."""

    name = "tap-exnaton"
    message_writer_class = StateAsIsWriter

    config_jsonschema = th.PropertiesList(
        th.Property(
            "base_url",
            th.URIType,
            default=DEFAULT_BASE_URL,
            description="Base URL of the source: the S3 'challenge' folder (file mode) or the API root",
        ),
        th.Property(
            "meters",
            th.ArrayType(
                th.ObjectType(
                    th.Property(
                        "stream_name", th.StringType, description="Stream/table name (stream per meter)"
                    ),
                    th.Property("muid", th.StringType, required=True, description="Meter id"),
                )
            ),
            description="Meters to extract: a list of {stream_name, muid}; default: the two Exnaton meters "
            "muid_1 and muid_2",
        ),
        th.Property(
            "meters_file",
            th.StringType,
            description="Path of a CSV file with a header row and a 'muid' column (and 'stream_name' for "
            "streams per meter), instead of 'meters'",
        ),
        th.Property(
            "stream_per_meter",
            th.BooleanType,
            default=True,
            description="true: one stream (and raw table) per meter, named by stream_name; false: one "
            f"stream '{FLEET_STREAM}' for every meter, with a bookmark per meter",
        ),
        th.Property(
            "max_concurrent_requests",
            th.IntegerType(minimum=1),
            default=DEFAULT_CONCURRENCY,
            description="HTTP requests in flight at once (each retried on its own)",
        ),
        th.Property(
            "api_mode",
            th.StringType(allowed_values=["file", "measurement"]),
            default="file",
            description="'file': GET {base_url}/{muid}.json; 'measurement': "
            "GET {base_url}/meterdata/measurement?muid=&measurement=&start=&stop=&limit= in windows",
        ),
        th.Property("measurement", th.StringType, default="energy", description="Measurement to request"),
        th.Property(
            "start_date",
            th.DateTimeType,
            description="Earliest reading to extract (inclusive); required in measurement mode without state",
        ),
        th.Property(
            "end_date",
            th.DateTimeType,
            description="Stop before this moment (exclusive); measurement mode defaults to now",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1),
            default=5000,
            description="'limit' per request; a window answered with this many readings is split and re-asked",
        ),
        th.Property(
            "window_days",
            th.IntegerType(minimum=1),
            default=31,
            description="Length of the first window asked per request in measurement mode",
        ),
        th.Property(
            "request_timeout", th.IntegerType(minimum=1), default=60, description="Seconds per HTTP request"
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=5,
            description="Retries of a request after 429, 5xx, connection errors and timeouts",
        ),
        th.Property(
            "retry_backoff_factor",
            # A numeric string too: Meltano passes such settings as strings (see meltano.yml).
            th.CustomType({"type": ["number", "string"], "minimum": 0, "pattern": r"^\d+(\.\d+)?$"}),
            default=2.0,
            description="Seconds of the first retry wait, doubled on every further retry (Retry-After wins)",
        ),
        th.Property(
            "shard_count",
            th.IntegerType(minimum=1),
            default=1,
            description="Split the meters into this many shards, for parallel runs (one run per shard)",
        ),
        th.Property(
            "shard_index",
            th.IntegerType(minimum=0),
            default=0,
            description="The shard this run extracts, 0 .. shard_count-1 (a meter's shard: crc32(muid) mod count)",
        ),
        th.Property(
            "append_only",
            th.BooleanType,
            default=False,
            description="Declare no key properties, so the loader appends instead of merging "
            "(the 'Full refresh, Append' mode together with meltano run --full-refresh)",
        ),
        th.Property(
            "record_layout",
            th.StringType(allowed_values=["reading", "meter_day"]),
            default="reading",
            description="'reading': one record per reading and OBIS code (any Singer target); 'meter_day': "
            "one record per meter, OBIS code and UTC day with parallel arrays (fast; dbt unnests them)",
        ),
        th.Property("api_key", th.StringType, secret=True, description="API key sent as a header, if set"),
        th.Property(
            "auth_header",
            th.StringType,
            default="Authorization",
            description="Name of the header that carries api_key",
        ),
    ).to_dict()

    def discover_streams(self) -> list[MeterReadingsStream]:
        """A stream per configured meter (one partition each), or one fleet stream, in the record layout."""
        check_settings(self.config)
        meters = self._shard_of(self.configured_meters())
        layout = MeterDaysStream if self.config.get("record_layout") == "meter_day" else MeterReadingsStream
        if not self.config.get("stream_per_meter", True):
            return [layout(self, name=FLEET_STREAM, muids=[m["muid"] for m in meters])]
        return [layout(self, name=m["stream_name"], muids=[m["muid"]]) for m in meters]

    def configured_meters(self) -> list[dict]:
        """The meters of ``meters_file`` or ``meters`` (default: the two Exnaton meters), checked."""
        listed, path = self.config.get("meters"), self.config.get("meters_file")
        if listed and path:
            msg = "settings 'meters' and 'meters_file' are both set: keep one"
            raise ExnatonSourceError(msg)
        meters = read_meters_file(Path(path)) if path else listed or DEFAULT_METERS
        where = f"meters_file {path}" if path else "setting 'meters'"
        per_meter = self.config.get("stream_per_meter", True)
        for position, meter in enumerate(meters, start=1):
            place = f"{where}: {_place(meter, position)}"
            if not str(meter.get("muid") or "").strip():
                msg = f"{place}: the muid is empty"
                raise ExnatonSourceError(msg)
            if per_meter and not meter.get("stream_name"):
                msg = (
                    f"{place}: muid {meter['muid']} has no stream_name, which a stream per meter needs "
                    "(or set stream_per_meter: false)"
                )
                raise ExnatonSourceError(msg)
        _reject_duplicates(meters, "muid", where)
        if per_meter:
            _reject_duplicates(meters, "stream_name", where)
        return meters

    def _shard_of(self, meters: list[dict]) -> list[dict]:
        """The meters of this run's shard; a meter keeps its shard when others are added or removed."""
        count, index = int(self.config.get("shard_count", 1)), int(self.config.get("shard_index", 0))
        if not 0 <= index < count:
            msg = f"setting 'shard_index' is {index}, but must be between 0 and shard_count-1 ({count - 1})"
            raise ExnatonSourceError(msg)
        return [m for m in meters if zlib.crc32(m["muid"].encode()) % count == index]

    def sync_all(self) -> None:
        """Every selected stream; then fail the run if some meters failed (the others are bookmarked)."""
        try:
            super().sync_all()
        finally:
            for stream in self.streams.values():
                stream.close()
        failures = [failure for stream in self.streams.values() for failure in stream.failures]
        if failures:
            meter_count = sum(len(stream.muids) for stream in self.streams.values() if stream.selected)
            raise MetersFailedError(failures, meter_count)


def check_settings(config: t.Mapping) -> None:
    """The settings that singer-sdk's schema check lets through but a run would fail on half-way, with a
    traceback (the SDK parses start_date itself, requests the URL): refused before any request."""
    start, end = (config_datetime(config, name) for name in ("start_date", "end_date"))
    if start is not None and end is not None and start >= end:
        msg = f"setting 'start_date' ({config['start_date']}) is not before 'end_date' ({config['end_date']})"
        raise ExnatonSourceError(msg)
    base_url = str(config.get("base_url") or "")
    url = urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        msg = f"setting 'base_url' is {base_url!r}, not an http:// or https:// URL"
        raise ExnatonSourceError(msg)


def read_meters_file(path: Path) -> list[dict]:
    """The rows of a meters CSV file (header row, a 'muid' column), each with its line for messages."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file, skipinitialspace=True)
            if "muid" not in (reader.fieldnames or []):
                msg = f"meters_file {path}: line 1: the header row has no 'muid' column"
                raise ExnatonSourceError(msg)
            width = len(reader.fieldnames)
            meters = [_meter_row(row, f"line {reader.line_num}", width, path) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        msg = f"meters_file {path}: cannot be read: {exc}"
        raise ExnatonSourceError(msg) from exc
    if not meters:
        msg = f"meters_file {path}: lists no meter"
        raise ExnatonSourceError(msg)
    return meters


def _meter_row(row: dict, line: str, width: int, path: Path) -> dict:
    if None in row or None in row.values():
        found = len(row) - 1 + len(row[None]) if None in row else sum(v is not None for v in row.values())
        msg = f"meters_file {path}: {line}: {found} fields where the header has {width}"
        raise ExnatonSourceError(msg)
    meter = {key: value.strip() for key, value in row.items()}
    return {**meter, "_line": line}


def _place(meter: dict, position: int) -> str:
    """Where a meter is listed: its line in the meters file, or its entry in setting 'meters'."""
    return meter.get("_line", f"entry {position}")


def _reject_duplicates(meters: list[dict], key: str, where: str) -> None:
    first_seen: dict[str, str] = {}
    for position, meter in enumerate(meters, start=1):
        value = meter.get(key)
        place = _place(meter, position)
        if value in first_seen:
            msg = f"{where}: {place}: {key} {value} is already on {first_seen[value]}"
            raise ExnatonSourceError(msg)
        first_seen[value] = place


def main() -> None:
    """CLI entry point: source and config errors end with one clear line and exit code 1."""
    try:
        TapExnaton.cli()
    except ExnatonSourceError as exc:
        for line in str(exc).splitlines():
            print(f"tap-exnaton: error: {line}", file=sys.stderr)  # noqa: T201
        sys.exit(1)


if __name__ == "__main__":
    main()
