"""Streams of tap-exnaton: a stream per meter or one for the fleet, in one of two record layouts."""

from __future__ import annotations

import itertools
import operator
import re
import time as clock
import typing as t
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import SinglePagePaginator

from tap_exnaton.client import (
    DEFAULT_CONCURRENCY,
    UTC,
    ExnatonSourceError,
    ExnatonStream,
    Fetched,
    MeterStateManager,
    Prefetch,
    Progress,
    Window,
    WindowPaginator,
    format_query_bound,
    format_source_timestamp,
    parse_source_timestamp,
    response_payload,
)

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.streams._state import StreamStateManager

    from tap_exnaton.tap import TapExnaton as Tap

# OBIS codes are six bytes, written by Exnaton as twelve hex digits (e.g. 0100011D00FF).
OBIS_KEY = re.compile(r"^[0-9A-Fa-f]{12}$")
KEY_PROPERTIES = ("muid", "obis_code", "timestamp")
MIN_WINDOW = timedelta(minutes=15)
# The key of a meter's (partition or stream) state that holds why its source failed in the last run.
ERROR_KEY = "error"

READING_SCHEMA = th.PropertiesList(
    th.Property("muid", th.StringType, required=True, description="Meter id (from the reading's tags)"),
    th.Property("measurement", th.StringType, description="Measurement name, e.g. energy"),
    th.Property(
        "timestamp", th.DateTimeType, required=True, description="Start of the 15-minute interval, UTC"
    ),
    th.Property("quality", th.StringType, description="Quality flag from the tags, e.g. measured"),
    th.Property("obis_code", th.StringType, required=True, description="OBIS code of the value"),
    th.Property("value", th.NumberType, description="Energy in kWh for the interval"),
    th.Property(
        "tags",
        th.ObjectType(additional_properties=True),
        description="The source record's tags object, kept whole",
    ),
).to_dict()


DAY_SCHEMA = th.PropertiesList(
    th.Property("muid", th.StringType, required=True, description="Meter id"),
    th.Property("obis_code", th.StringType, required=True, description="OBIS code of the values"),
    th.Property("day", th.DateType, required=True, description="UTC calendar day of the readings"),
    th.Property("measurement", th.StringType, description="Measurement name, e.g. energy"),
    th.Property("first_timestamp", th.DateTimeType, description="Earliest reading of the record, UTC"),
    th.Property("last_timestamp", th.DateTimeType, required=True, description="Latest reading of the record"),
    th.Property("reading_count", th.IntegerType, description="Number of readings in the arrays"),
    th.Property(
        "timestamps",
        th.ArrayType(th.DateTimeType),
        description="Interval starts (UTC), ascending; null when reading i starts at first_timestamp + i * 15 "
        "minutes (the usual case: a day without gaps or stray timestamps)",
    ),
    th.Property(
        "values", th.ArrayType(th.NumberType), description="kWh per interval, parallel to timestamps"
    ),
    th.Property(
        "quality", th.StringType, description="The quality tag of every reading, when they share one"
    ),
    th.Property(
        "qualities",
        th.ArrayType(th.StringType),
        description="Quality tag per interval; null when all readings share one (then it is in quality)",
    ),
    th.Property(
        "tags",
        th.ArrayType(th.ObjectType(additional_properties=True)),
        description="Each reading's whole tags object, parallel to timestamps; null when every reading's "
        "tags hold nothing beyond muid and quality (the usual case: they are in muid and qualities)",
    ),
).to_dict()
# The tag keys that meter_day records carry in columns of their own.
PLAIN_TAG_KEYS = frozenset({"muid", "quality"})
# The source's own timestamp format; such a string is kept as it is instead of being re-formatted.
CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
INTERVAL = timedelta(minutes=15)
# Key -> OBIS code (upper case) or None: a source repeats the same few keys in every record, and a dict
# look-up is much cheaper than the pattern per key and record. Bounded, since keys come from outside.
_OBIS_OF_KEY: dict[str, str | None] = {}
_OBIS_CACHE_LIMIT = 1024
_UNSEEN = object()
# Fields of a source record that are never OBIS values.
SOURCE_FIELDS = frozenset({"measurement", "timestamp", "tags"})
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def _learn_obis_key(key: str) -> str | None:
    """The OBIS code a key not seen before holds (upper case), or None for any other key; remembered."""
    code = key.upper() if len(key) == 12 and OBIS_KEY.match(key) else None
    if len(_OBIS_OF_KEY) < _OBIS_CACHE_LIMIT:
        _OBIS_OF_KEY[key] = code
    return code


class Reading(t.NamedTuple):
    """One OBIS value of one source record."""

    moment: datetime
    timestamp: str
    obis_code: str
    value: float | int | None
    muid: str
    measurement: str | None
    tags: dict


def parse_readings(
    payload: list, *, meter_muid: str, where: str, low: datetime = EARLIEST, high: datetime = LATEST
) -> list[Reading]:
    """Validate every source record; return one Reading per OBIS-shaped key of those in [low, high)."""
    obis_of_key = _OBIS_OF_KEY
    readings: list[Reading] = []
    for index, source in enumerate(payload):
        if not isinstance(source, dict):
            msg = f"{where}: reading #{index} is {type(source).__name__}, expected an object"
            raise ExnatonSourceError(msg)
        raw_timestamp = source.get("timestamp")
        moment = parse_source_timestamp(raw_timestamp)
        if moment is None:
            msg = (
                f"{where}: reading #{index} field 'timestamp' is not a parsable date-time: {raw_timestamp!r}"
            )
            raise ExnatonSourceError(msg)
        timestamp = (
            raw_timestamp if CANONICAL_TIMESTAMP.match(raw_timestamp) else format_source_timestamp(moment)
        )
        wanted = low <= moment < high
        tags = source.get("tags")
        if not isinstance(tags, dict):
            tags = {}
        for key, value in source.items():
            if key in SOURCE_FIELDS:
                continue
            obis_code = obis_of_key.get(key, _UNSEEN)
            if obis_code is _UNSEEN:
                obis_code = _learn_obis_key(key)
            if obis_code is None:
                continue
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                msg = f"{where}: reading #{index} ({timestamp}) field {key!r} is not a number: {value!r}"
                raise ExnatonSourceError(msg)
            if wanted:
                muid = tags.get("muid") or meter_muid
                readings.append(
                    Reading(moment, timestamp, obis_code, value, muid, source.get("measurement"), tags)
                )
    return readings


SORT_KEY = operator.attrgetter("timestamp", "obis_code")


def reading_record(reading: Reading) -> dict:
    """The long-form Singer record of one reading."""
    return {
        "muid": reading.muid,
        "measurement": reading.measurement,
        "timestamp": reading.timestamp,
        "quality": reading.tags.get("quality"),
        "obis_code": reading.obis_code,
        "value": reading.value,
        "tags": reading.tags,
    }


@dataclass(frozen=True)
class MeterSync:
    """One meter's part of a sync: what to ask the source, and what is loaded already."""

    muid: str
    bookmark: datetime | None
    start: datetime
    stop: datetime

    @property
    def context(self) -> dict:
        """The context of its requests: ``{muid}`` in the URL path or query."""
        return {"muid": self.muid}


class MeterReadingsStream(ExnatonStream):
    """Energy readings of meters, one record per reading and OBIS code.

    A stream serves one meter (``partitioned=False``: the stream per meter, its bookmark is the stream's)
    or a fleet (``partitioned=True``: one partition and bookmark per meter). Either way the meters' pages
    are fetched by a pool of threads ahead of the meter being emitted, and a meter whose source fails is
    reported to the tap and skipped, its bookmark unchanged, while the others go on.

    ``file`` mode reads the whole S3 export of a meter (newest first, so the stream is unsorted and the
    SDK only commits the bookmark at the end of the meter); ``measurement`` mode walks the upstream API in
    ascending windows and emits each window sorted, so the bookmark advances as the run goes.
    """

    replication_key = "timestamp"
    schema: t.ClassVar[dict] = READING_SCHEMA
    key_properties: t.ClassVar[list[str]] = list(KEY_PROPERTIES)

    def __init__(self, tap: Tap, *, name: str, muids: list[str], partitioned: bool = False) -> None:
        self.muids = muids
        self.partitioned = partitioned
        self._prefetch: Prefetch | None = None
        super().__init__(tap, name=name)
        if not self.config.get("append_only", False):
            self.primary_keys = list(self.key_properties)
        # A duration metric per request is a log line per meter: at fleet size, more work than the request.
        self._LOG_REQUEST_METRICS = not partitioned

    @property
    def state_manager(self) -> StreamStateManager:
        if self._state_manager is None and self.partitioned:
            self._state_manager = MeterStateManager(
                tap_name=self.tap_name,
                stream_name=self.name,
                tap_state=self._tap_state,
                is_sorted=self.is_sorted,
                check_sorted=self.check_sorted,
            )
        return super().state_manager

    @property
    def partitions(self) -> list[dict] | None:
        return [{"muid": muid} for muid in self.muids] if self.partitioned else None

    @property
    def api_mode(self) -> str:
        return str(self.config.get("api_mode", "file"))

    @property
    def path(self) -> str:  # type: ignore[override]
        return "/meterdata/measurement" if self.api_mode == "measurement" else "/{muid}.json"

    @property
    def is_sorted(self) -> bool:
        return self.api_mode == "measurement"

    def get_url_params(self, context: t.Any, next_page_token: Window | None) -> dict[str, t.Any]:
        if self.api_mode != "measurement" or next_page_token is None:
            return {}
        return {
            "muid": context["muid"],
            "measurement": self.config.get("measurement", "energy"),
            "start": format_query_bound(next_page_token.start),
            "stop": format_query_bound(next_page_token.stop),
            "limit": int(self.config.get("page_size", 5000)),
        }

    def sync(self, context: t.Any = None) -> None:
        self._progress = Progress(started=clock.monotonic())
        workers = int(self.config.get("max_concurrent_requests", DEFAULT_CONCURRENCY))
        self._prefetch = Prefetch(self._meter_syncs(), self._fetch_meter, workers=workers)
        try:
            super().sync(context)
        finally:
            self._prefetch.close()
        self.logger.info("%s: %s", self.name, self._progress.summary())

    def _meter_syncs(self) -> t.Iterator[MeterSync]:
        """A MeterSync per meter, in the order the SDK syncs them (read from the state as it was)."""
        for muid in self.muids:
            context = {"muid": muid} if self.partitioned else None
            # Only the bookmark of the incoming state counts here (the SDK's starting value falls back to
            # start_date, which is an inclusive bound and is applied on its own).
            bookmark = parse_source_timestamp(self.get_context_state(context).get("replication_key_value"))
            start, stop = self._sync_range(bookmark)
            yield MeterSync(muid, bookmark, start, stop)

    def _fetch_meter(self, meter: MeterSync) -> Fetched:
        if meter.start >= meter.stop:
            return Fetched()
        return self.fetch_pages(self._paginator(meter), meter.context)

    def _paginator(self, meter: MeterSync) -> WindowPaginator | SinglePagePaginator:
        if self.api_mode != "measurement":
            return SinglePagePaginator()
        return WindowPaginator(
            meter.start,
            meter.stop,
            window=timedelta(days=int(self.config.get("window_days", 31))),
            limit=int(self.config.get("page_size", 5000)),
            min_window=MIN_WINDOW,
            where=f"{self.name} (muid {meter.muid})",
        )

    def get_records(self, context: t.Any) -> t.Iterable[dict[str, t.Any]]:
        if self._prefetch is None or (self.partitioned and not context):
            return  # a fleet stream with no meters in this shard
        meter, fetching = self._prefetch.take()
        if context and context["muid"] != meter.muid:
            msg = f"{self.name}: partitions synced out of order ({context['muid']} before {meter.muid})"
            raise RuntimeError(msg)
        try:
            fetched = fetching.result()
            self._progress.add(fetched)
            pages = (self._page_readings(response, meter) for response in fetched.responses)
            yield from self._meter_records(pages, meter)
        except ExnatonSourceError as exc:
            self._tap.meter_failed(str(exc))
            # The meter's own state says why it is behind, until it next succeeds: Meltano keeps each run's
            # state in its run history, where the runs endpoint of the API reads the failed meters.
            self.get_context_state(context)[ERROR_KEY] = str(exc).splitlines()[0]
        else:
            self.get_context_state(context).pop(ERROR_KEY, None)

    def _page_readings(self, response: requests.Response, meter: MeterSync) -> list[Reading]:
        where = f"{self.name}: GET {self._redacted(response.url)}"
        payload = response_payload(response, where=where)
        low = meter.start
        loaded_up_to = self._loaded_up_to(meter)
        if loaded_up_to is not None:
            low = max(low, loaded_up_to + timedelta(microseconds=1))
        readings = parse_readings(payload, meter_muid=meter.muid, where=where, low=low, high=meter.stop)
        if self._sorts_pages():
            readings.reverse()  # the source sends newest first: reversed, the sort has little left to do
            readings.sort(key=SORT_KEY)
        self._progress.readings += len(readings)
        return readings

    def _meter_records(self, pages: t.Iterable[list[Reading]], meter: MeterSync) -> t.Iterator[dict]:
        for readings in pages:
            yield from map(reading_record, readings)

    def _sorts_pages(self) -> bool:
        return self.api_mode == "measurement"

    def _resume_from(self, bookmark: datetime) -> datetime:
        return bookmark

    def _loaded_up_to(self, meter: MeterSync) -> datetime | None:
        # File mode re-reads the whole export: keep only what is newer than the bookmark. Measurement mode
        # asks from the bookmark inclusive, so that a run stopped inside one timestamp loses nothing.
        return None if self.api_mode == "measurement" else meter.bookmark

    def _sync_range(self, bookmark: datetime | None) -> tuple[datetime, datetime]:
        start_date = _config_datetime(self.config.get("start_date"))
        end_date = _config_datetime(self.config.get("end_date"))
        if self.api_mode == "measurement":
            start = self._resume_from(bookmark) if bookmark else start_date
            if start is None:
                msg = f"{self.name}: start_date is required in measurement mode when there is no state"
                raise ExnatonSourceError(msg)
            return max(start, start_date or start), end_date or datetime.now(UTC)
        return start_date or EARLIEST, end_date or LATEST


class MeterDaysStream(MeterReadingsStream):
    """The same readings, one record per meter, OBIS code and UTC day with parallel arrays.

    96 readings travel in one Singer record, so the loader does a hundredth of its per-record work; dbt
    unnests the arrays in SQL. A day is always emitted whole and merged on (muid, obis_code, day), so a
    re-emitted day replaces the earlier copy instead of adding to it. Readings come in ascending order
    (each page is sorted, windows ascend), and a day is held back until a later day shows up, because a
    day can span two measurement windows.
    """

    replication_key = "last_timestamp"
    schema: t.ClassVar[dict] = DAY_SCHEMA
    key_properties: t.ClassVar[list[str]] = ["muid", "obis_code", "day"]
    is_sorted = True  # type: ignore[assignment]
    # Records are built with exact types here; walking 96-element arrays again per record costs more than
    # the rest of the tap.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY

    def _meter_records(self, pages: t.Iterable[list[Reading]], meter: MeterSync) -> t.Iterator[dict]:
        for day in group_meter_days(itertools.chain.from_iterable(pages)):
            if meter.bookmark is None or parse_source_timestamp(day["last_timestamp"]) > meter.bookmark:
                yield day

    def _sorts_pages(self) -> bool:
        return True

    def _loaded_up_to(self, meter: MeterSync) -> datetime | None:
        # Days are filtered as a whole in _meter_records: a day with one new reading is re-emitted complete.
        return None

    def _resume_from(self, bookmark: datetime) -> datetime:
        return datetime.combine(bookmark.date(), time.min, tzinfo=UTC)


def group_meter_days(readings: t.Iterable[Reading]) -> t.Iterator[dict]:
    """Group ascending readings into one record per (obis_code, UTC day)."""
    current_day, by_obis = None, {}
    for reading in readings:
        day = reading.timestamp[:10]
        if day != current_day:
            yield from day_records(by_obis)
            current_day, by_obis = day, {}
        by_obis.setdefault(reading.obis_code, []).append(reading)
    yield from day_records(by_obis)


def day_records(by_obis: dict[str, list[Reading]]) -> list[dict]:
    records = []
    for obis_code, readings in by_obis.items():
        first, last = readings[0], readings[-1]
        plain_tags = all(reading.tags.keys() <= PLAIN_TAG_KEYS for reading in readings)
        qualities = [reading.tags.get("quality") for reading in readings]
        one_quality = qualities.count(qualities[0]) == len(qualities)
        records.append(
            {
                "muid": first.muid,
                "obis_code": obis_code,
                "day": first.timestamp[:10],
                "measurement": first.measurement,
                "first_timestamp": first.timestamp,
                "last_timestamp": last.timestamp,
                "reading_count": len(readings),
                # The arrays a loader would spend most of its time on are left out when they say nothing
                # new: a regular day's timestamps follow from first_timestamp, a shared quality is one value.
                "timestamps": None if on_interval_grid(readings) else [r.timestamp for r in readings],
                # One numeric type per array: a loader dumps a list as one typed array (int 0 becomes 0.0).
                "values": [None if reading.value is None else float(reading.value) for reading in readings],
                "quality": qualities[0] if one_quality else None,
                "qualities": None if one_quality else qualities,
                "tags": None if plain_tags else [reading.tags for reading in readings],
            }
        )
    # The stream is sorted on last_timestamp: several OBIS codes of one day must go out in that order.
    return sorted(records, key=lambda record: record["last_timestamp"])


def on_interval_grid(readings: list[Reading]) -> bool:
    """Whether reading i starts exactly at the first reading's start + i * 15 minutes."""
    start = readings[0].moment
    return all(reading.moment - start == INTERVAL * index for index, reading in enumerate(readings))


def expand_day_record(record: dict) -> list[tuple[str, float | None, str | None]]:
    """(timestamp, value, quality) of every reading of a meter_day record, the arrays filled in."""
    count = len(record["values"])
    timestamps = record["timestamps"]
    if timestamps is None:
        start = parse_source_timestamp(record["first_timestamp"])
        timestamps = [format_source_timestamp(start + INTERVAL * index) for index in range(count)]
    qualities = record["qualities"] or [record["quality"]] * count
    return list(zip(timestamps, record["values"], qualities, strict=True))


def _config_datetime(value: object) -> datetime | None:
    if value in (None, ""):
        return None
    moment = parse_source_timestamp(str(value))
    if moment is None:
        msg = f"setting value {value!r} is not an ISO 8601 date or date-time"
        raise ExnatonSourceError(msg)
    return moment
