"""tap-exnaton: settings and stream list."""

from __future__ import annotations

import sys
import zlib

from singer_sdk import Tap
from singer_sdk import typing as th

from tap_exnaton.client import ExnatonSourceError
from tap_exnaton.streams import MeterDaysStream, MeterReadingsStream

DEFAULT_BASE_URL = (
    "https://exnaton-public-s3-bucket20230329123331528000000001.s3.eu-central-1.amazonaws.com/challenge"
)
DEFAULT_METERS = [
    {"stream_name": "muid_1", "muid": "95ce3367-cbce-4a4d-bbe3-da082831d7bd"},
    {"stream_name": "muid_2", "muid": "1db7649e-9342-4e04-97c7-f0ebb88ed1f8"},
]


class TapExnaton(Tap):
    """Singer tap for Exnaton smart-meter energy readings."""

    name = "tap-exnaton"

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
                    th.Property("stream_name", th.StringType, required=True, description="Stream/table name"),
                    th.Property("muid", th.StringType, required=True, description="Meter id"),
                )
            ),
            default=DEFAULT_METERS,
            description="Meters to extract, one stream each: a list of {stream_name, muid}",
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
        """One stream per configured meter, in the configured record layout."""
        meters = self.config.get("meters") or DEFAULT_METERS
        names = [meter["stream_name"] for meter in meters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            msg = f"setting 'meters' names a stream more than once: {', '.join(duplicates)}"
            raise ExnatonSourceError(msg)
        layout = MeterDaysStream if self.config.get("record_layout") == "meter_day" else MeterReadingsStream
        return [layout(self, stream_name=m["stream_name"], muid=m["muid"]) for m in self._shard_of(meters)]

    def _shard_of(self, meters: list[dict]) -> list[dict]:
        """The meters of this run's shard; a meter keeps its shard when others are added or removed."""
        count, index = int(self.config.get("shard_count", 1)), int(self.config.get("shard_index", 0))
        if not 0 <= index < count:
            msg = f"setting 'shard_index' is {index}, but must be between 0 and shard_count-1 ({count - 1})"
            raise ExnatonSourceError(msg)
        return [m for m in meters if zlib.crc32(m["muid"].encode()) % count == index]


def main() -> None:
    """CLI entry point: source and config errors end with one clear line and exit code 1."""
    try:
        TapExnaton.cli()
    except ExnatonSourceError as exc:
        print(f"tap-exnaton: error: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(1)


if __name__ == "__main__":
    main()
