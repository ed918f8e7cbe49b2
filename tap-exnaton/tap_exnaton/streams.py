"""Streams of tap-exnaton: every stream is partitioned by meter, in one of two record layouts.

A stream per meter is a stream with one partition; the fleet stream ``readings`` has one per meter. Every
meter goes the same way: its pages are fetched ahead by a pool of threads, the readings after its bookmark
are kept, sorted and turned into records, and its bookmark is committed when its partition ends.
"""

from __future__ import annotations

import logging
import operator
import re
import time as clock
import typing as t
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_exnaton.client import (
    DEFAULT_CONCURRENCY,
    ExnatonSourceError,
    ExnatonStream,
    Fetched,
    MeterStateManager,
    Prefetch,
    Progress,
    format_source_timestamp,
    parse_source_timestamp,
    response_payload,
)
from tap_exnaton.sources import SourceApi, source_api_for

if t.TYPE_CHECKING:
    from tap_exnaton.tap import TapExnaton as Tap

# OBIS codes are six bytes, written by Exnaton as twelve hex digits (e.g. 0100011D00FF).
OBIS_KEY = re.compile(r"^[0-9A-Fa-f]{12}$")

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
    th.Property(
        "day",
        th.DateType,
        required=True,
        description="UTC calendar day of the readings (a record may hold part of it)",
    ),
    th.Property("measurement", th.StringType, description="Measurement name, e.g. energy"),
    th.Property(
        "first_timestamp", th.DateTimeType, required=True, description="Earliest reading of the record, UTC"
    ),
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
INTERVAL = timedelta(minutes=15)
# Fields of a source record that are never OBIS values.
SOURCE_FIELDS = ("measurement", "timestamp", "tags")
# Key -> OBIS code (upper case) or None: a source repeats the same few keys in every record, and a dict
# look-up is much cheaper than the pattern per key and record. Bounded, since keys come from outside.
_OBIS_OF_KEY: dict[str, str | None] = dict.fromkeys(SOURCE_FIELDS)
_OBIS_CACHE_LIMIT = 1024
_UNSEEN = object()
# Value types a reading may hold (bool is a type of its own, so True is not a number here).
_NUMBER_TYPES = frozenset({int, float, type(None)})
# Timestamps already checked to be in the source's canonical form (``2023-02-28T23:45:00.000Z``, UTC):
# such strings sort as the moments they name, so bounds and bookmarks are compared as strings. Every meter
# of a fleet sends the same timestamps, so most checks are one set look-up. Bounded like the OBIS keys.
_CANONICAL: set[str] = set()
_CANONICAL_LIMIT = 1 << 18
_TIMESTAMP = operator.itemgetter("timestamp")
# "HH:MM" of every minute of a day, to write the timestamps of a regular day without datetime arithmetic.
_CLOCK = [f"{minute // 60:02d}:{minute % 60:02d}" for minute in range(24 * 60)]


def _learn_obis_key(key: str) -> str | None:
    """The OBIS code a key not seen before holds (upper case), or None for any other key; remembered."""
    code = key.upper() if len(key) == 12 and OBIS_KEY.match(key) else None
    if len(_OBIS_OF_KEY) < _OBIS_CACHE_LIMIT:
        _OBIS_OF_KEY[key] = code
    return code


def canonical_timestamp(value: object) -> str | None:
    """``value`` in the source's canonical form (UTC, milliseconds, ``Z``), or None if it is no date-time."""
    if value.__class__ is not str:
        return None
    if value in _CANONICAL:
        return value
    if _looks_canonical(value):
        try:
            datetime.fromisoformat(value[:23])  # a real date and time, not only the right shape
        except ValueError:
            return None
        if len(_CANONICAL) < _CANONICAL_LIMIT:
            _CANONICAL.add(value)
        return value
    moment = parse_source_timestamp(value)
    if moment is None:
        return None
    canonical = format_source_timestamp(moment)
    if canonical == value and len(_CANONICAL) < _CANONICAL_LIMIT:
        _CANONICAL.add(canonical)
    return canonical


def _looks_canonical(value: str) -> bool:
    return (
        len(value) == 24
        and value[23] == "Z"
        and value[19] == "."
        and value[10] == "T"
        and value[4] == value[7] == "-"
        and value[13] == value[16] == ":"
    )


@dataclass(frozen=True)
class Keep:
    """Which readings of a meter a run sends: after its bookmark, within [start_date, end_date).

    Canonical timestamp strings (or None: no bound), compared as strings.
    """

    after: str | None = None
    start: str | None = None
    stop: str | None = None

    def __contains__(self, stamp: str) -> bool:
        return (
            (self.after is None or stamp > self.after)
            and (self.start is None or stamp >= self.start)
            and (self.stop is None or stamp < self.stop)
        )


def kept_source_records(payload: list, *, where: str, keep: Keep) -> tuple[list[dict], int]:
    """Check every source record of a page; return those ``keep`` holds (their timestamps canonical) and
    the number of readings (OBIS values) they hold.

    Every record is checked, kept or not: a page with a bad record is refused whole.
    """
    obis_of_key = _OBIS_OF_KEY
    canonical = _CANONICAL
    kept: list[dict] = []
    readings = 0
    for index, source in enumerate(payload):
        if source.__class__ is not dict:
            msg = f"{where}: reading #{index} is {type(source).__name__}, expected an object"
            raise ExnatonSourceError(msg)
        stamp = source.get("timestamp")
        if stamp.__class__ is not str or stamp not in canonical:
            stamp = canonical_timestamp(stamp)
            if stamp is None:
                raw = source.get("timestamp")
                msg = f"{where}: reading #{index} field 'timestamp' is not a parsable date-time: {raw!r}"
                raise ExnatonSourceError(msg)
            source["timestamp"] = stamp
        values = 0
        for key, value in source.items():
            code = obis_of_key.get(key, _UNSEEN)
            if code is _UNSEEN:
                code = _learn_obis_key(key)
            if code is not None:
                if value.__class__ not in _NUMBER_TYPES:
                    msg = f"{where}: reading #{index} ({stamp}) field {key!r} is not a number: {value!r}"
                    raise ExnatonSourceError(msg)
                values += 1
        if stamp in keep:
            kept.append(source)
            readings += values
    return kept, readings


def obis_values(source: dict) -> t.Iterator[tuple[str, float | int | None]]:
    """(OBIS code, value) of every OBIS-shaped key of a checked source record."""
    obis_of_key = _OBIS_OF_KEY
    for key, value in source.items():
        code = obis_of_key.get(key, _UNSEEN)
        if code is _UNSEEN:
            code = _learn_obis_key(key)
        if code is not None:
            yield code, value


def source_tags(source: dict) -> dict:
    tags = source.get("tags")
    return tags if tags.__class__ is dict else {}


@dataclass(frozen=True)
class MeterSync:
    """One meter's part of a sync: what to ask the source, and which readings to send on."""

    muid: str
    keep: Keep
    start: datetime | None
    stop: datetime | None

    @property
    def context(self) -> dict:
        """The context of its requests and its partition: ``{muid}``."""
        return {"muid": self.muid}


class MeterReadingsStream(ExnatonStream):
    """Energy readings of meters, one record per reading and OBIS code; a partition per meter.

    A meter's run sends only the readings after its bookmark, in ascending order. The stream is declared
    unsorted on purpose: the SDK then commits a meter's bookmark only when its partition ends, never between
    two records, so the records of one timestamp (one per OBIS code, or one per OBIS code and day) never
    straddle a STATE message, and a run stopped anywhere re-sends from the last committed bookmark: at least
    once, and nothing twice in the marts (dbt's fct_readings deduplicates). A meter whose source fails is recorded with
    an ``error`` in its partition state, its bookmark unchanged, while the others go on.
    """

    replication_key = "timestamp"
    schema: t.ClassVar[dict] = READING_SCHEMA
    key_properties: t.ClassVar[list[str]] = ["muid", "obis_code", "timestamp"]
    is_sorted = False

    def __init__(self, tap: Tap, *, name: str, muids: list[str]) -> None:
        self.muids = muids
        self.source_api: SourceApi = source_api_for(tap.config)
        self.failures: list[str] = []
        self._meter_state: MeterStateManager | None = None
        self._prefetch: Prefetch | None = None
        self._progress: Progress | None = None
        super().__init__(tap, name=name)
        if not self.config.get("append_only", False):
            self.primary_keys = list(self.key_properties)
        self.logger.addFilter(_quiet_per_partition_lines)
        logging.getLogger("singer_sdk").addFilter(_quiet_per_partition_lines)

    @property
    def state_manager(self) -> MeterStateManager:
        if self._meter_state is None:
            self._meter_state = MeterStateManager(
                tap_name=self.tap_name,
                stream_name=self.name,
                tap_state=self.tap_state,
                state_partitioning_keys=self.state_partitioning_keys,
                is_sorted=self.is_sorted,
                check_sorted=self.check_sorted,
                sole_muid=self.muids[0] if len(self.muids) == 1 else None,
            )
        return self._meter_state

    @property
    def partitions(self) -> list[dict]:
        return [{"muid": muid} for muid in self.muids]

    @property
    def path(self) -> str:  # type: ignore[override]
        return self.source_api.path

    def get_url_params(self, context: t.Any, next_page_token: t.Any) -> dict[str, t.Any]:
        return self.source_api.url_params(context, next_page_token)

    def get_records(self, context: t.Any) -> t.Iterable[dict[str, t.Any]]:
        if not context:
            return  # a fleet stream with no meters in this shard
        meter, fetching = self._meters_fetched_ahead().take()
        if context["muid"] != meter.muid:
            msg = f"{self.name}: partitions synced out of order ({context['muid']} before {meter.muid})"
            raise RuntimeError(msg)
        state = self.get_context_state(context)
        try:
            fetched = fetching.result()
            self._progress.add(fetched)
            sources = self._kept_sources(fetched, meter)
        except ExnatonSourceError as exc:
            self._meter_failed(state, str(exc))
        else:
            yield from self.meter_records(sources, meter.muid)
            state.pop("error", None)
            state.pop("error_at", None)
        if self._prefetch.done:
            self.close()

    def meter_records(self, sources: list[dict], muid: str) -> t.Iterator[dict]:
        """The records of a meter's kept source records (ascending): one per reading and OBIS code."""
        for source in sources:
            tags = source_tags(source)
            reading_muid = tags.get("muid") or muid
            stamp, measurement, quality = source["timestamp"], source.get("measurement"), tags.get("quality")
            for obis_code, value in obis_values(source):
                yield {
                    "muid": reading_muid,
                    "measurement": measurement,
                    "timestamp": stamp,
                    "quality": quality,
                    "obis_code": obis_code,
                    "value": value,
                    "tags": tags,
                }

    def close(self) -> None:
        """End the fetch pool and its connections (when the last meter is taken, and by the tap after every sync)."""
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None
            # The kept-alive connections of the fetch threads, which nothing else closes before the exit.
            self.requests_session.close()
            self.logger.info("%s: %s", self.name, self._progress.summary())

    def _meters_fetched_ahead(self) -> Prefetch:
        if self._prefetch is None:
            self._progress = Progress(started=clock.monotonic())
            workers = int(self.config.get("max_concurrent_requests", DEFAULT_CONCURRENCY))
            self._prefetch = Prefetch(self._meter_syncs(), self._fetch_meter, workers=workers)
        return self._prefetch

    def _meter_syncs(self) -> t.Iterator[MeterSync]:
        """A MeterSync per meter, in the order the SDK syncs them, from each meter's committed bookmark."""
        start_date = config_datetime(self.config, "start_date")
        stop = config_datetime(self.config, "end_date") or self.source_api.default_stop()
        bounds = {
            "start": None if start_date is None else format_source_timestamp(start_date),
            "stop": None if stop is None else format_source_timestamp(stop),
        }
        for muid in self.muids:
            bookmark = parse_source_timestamp(
                self.get_context_state({"muid": muid}).get("replication_key_value")
            )
            start = max(bookmark, start_date or bookmark) if bookmark else start_date
            after = None if bookmark is None else format_source_timestamp(bookmark)
            yield MeterSync(muid, Keep(after=after, **bounds), start, stop)

    def _fetch_meter(self, meter: MeterSync) -> Fetched:
        if meter.start is not None and meter.stop is not None and meter.start >= meter.stop:
            return Fetched()
        where = f"{self.name} (muid {meter.muid})"
        return self.fetch_pages(
            self.source_api.paginator(meter.start, meter.stop, where=where), meter.context
        )

    def _kept_sources(self, fetched: Fetched, meter: MeterSync) -> list[dict]:
        kept: list[dict] = []
        for response in fetched.responses:
            where = f"{self.name}: GET {self._redacted(response.url)}"
            payload = response_payload(response, where=where)
            page, readings = kept_source_records(payload, where=where, keep=meter.keep)
            kept += page
            self._progress.readings += readings
        # Pages come newest first, windows oldest first: sorting runs in either order costs little.
        kept.sort(key=_TIMESTAMP)
        return kept

    def _meter_failed(self, state: dict, message: str) -> None:
        """Log it now, keep it in the meter's state (contract 2), fail the run once the others are done.

        The error stays in the state until the meter next succeeds; ``error_at`` says which run it belongs
        to (the API's run history lists a meter as failed only in the run whose span holds it)."""
        self.logger.error("%s", message)
        state["error"] = message.splitlines()[0] if message else "unknown error"
        state["error_at"] = format_source_timestamp(datetime.now(UTC))
        self.failures.append(message)


# Lines the SDK logs once per partition: as it starts, and as its first record is counted in an unsorted
# stream (which says progress is not resumable: here it is, per meter, see MeterReadingsStream). A fleet's
# 10,000 of each cost more than its fetches. Pinned by tests/test_sdk_pins.py.
PER_PARTITION_LINES = ("Starting incremental sync of", "Stream is assumed to be unsorted")


def _quiet_per_partition_lines(record: logging.LogRecord) -> bool:
    return not (isinstance(record.msg, str) and record.msg.startswith(PER_PARTITION_LINES))


class MeterDaysStream(MeterReadingsStream):
    """The same readings, one record per meter, OBIS code and UTC day (or the part of it after the
    bookmark), with parallel arrays.

    96 readings travel in one Singer record, so the loader does a hundredth of its per-record work; dbt
    unnests the arrays in SQL. A run that adds one reading to a day sends a record of that one reading: the
    key is (muid, obis_code, first_timestamp), and dbt's fct_readings deduplicates the readings of records that overlap.
    """

    replication_key = "last_timestamp"
    schema: t.ClassVar[dict] = DAY_SCHEMA
    key_properties: t.ClassVar[list[str]] = ["muid", "obis_code", "first_timestamp"]
    # Records are built with exact types here; walking 96-element arrays again per record costs more than
    # the rest of the tap.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY

    def meter_records(self, sources: list[dict], muid: str) -> t.Iterator[dict]:
        day, columns = None, {}
        for source in sources:
            stamp = source["timestamp"]
            if stamp[:10] != day:
                yield from (column.record() for column in columns.values())
                day, columns = stamp[:10], {}
            tags = source_tags(source)
            plain, quality = tags.keys() <= PLAIN_TAG_KEYS, tags.get("quality")
            for obis_code, value in obis_values(source):
                column = columns.get(obis_code)
                if column is None:
                    column = columns[obis_code] = DayColumns(
                        tags.get("muid") or muid, obis_code, source.get("measurement")
                    )
                column.timestamps.append(stamp)
                # One numeric type per array: a loader dumps a list as one typed array (int 0 becomes 0.0).
                column.values.append(value if value.__class__ is not int else float(value))
                column.qualities.append(quality)
                column.tags.append(tags)
                column.plain_tags = column.plain_tags and plain
        yield from (column.record() for column in columns.values())


class DayColumns:
    """The readings of one meter, OBIS code and day, gathered as the columns of a meter_day record."""

    __slots__ = (
        "measurement",
        "muid",
        "obis_code",
        "plain_tags",
        "qualities",
        "tags",
        "timestamps",
        "values",
    )

    def __init__(self, muid: str, obis_code: str, measurement: str | None) -> None:
        self.muid, self.obis_code, self.measurement = muid, obis_code, measurement
        self.timestamps: list[str] = []
        self.values: list[float | None] = []
        self.qualities: list[str | None] = []
        self.tags: list[dict] = []
        self.plain_tags = True

    def record(self) -> dict:
        stamps, qualities = self.timestamps, self.qualities
        one_quality = qualities.count(qualities[0]) == len(qualities)
        return {
            "muid": self.muid,
            "obis_code": self.obis_code,
            "day": stamps[0][:10],
            "measurement": self.measurement,
            "first_timestamp": stamps[0],
            "last_timestamp": stamps[-1],
            "reading_count": len(stamps),
            # The arrays a loader would spend most of its time on are left out when they say nothing new: a
            # regular day's timestamps follow from first_timestamp, a shared quality is one value.
            "timestamps": None if on_interval_grid(stamps) else stamps,
            "values": self.values,
            "quality": qualities[0] if one_quality else None,
            "qualities": None if one_quality else qualities,
            "tags": None if self.plain_tags else self.tags,
        }


def on_interval_grid(stamps: list[str]) -> bool:
    """Whether canonical timestamps of one day are first + i * 15 minutes (compared as strings)."""
    first = stamps[0]
    minute = int(first[11:13]) * 60 + int(first[14:16])
    end = minute + 15 * len(stamps)
    if end > len(_CLOCK) + 14:
        return False
    prefix, suffix = first[:11], first[16:]
    return stamps == [prefix + _CLOCK[m] + suffix for m in range(minute, end, 15)]


def expand_day_record(record: dict) -> list[tuple[str, float | None, str | None]]:
    """(timestamp, value, quality) of every reading of a meter_day record, the arrays filled in."""
    count = len(record["values"])
    timestamps = record["timestamps"]
    if timestamps is None:
        start = parse_source_timestamp(record["first_timestamp"])
        timestamps = [format_source_timestamp(start + INTERVAL * index) for index in range(count)]
    qualities = record["qualities"] or [record["quality"]] * count
    return list(zip(timestamps, record["values"], qualities, strict=True))


def config_datetime(config: t.Mapping, name: str) -> datetime | None:
    """Setting ``name`` as an aware UTC datetime (None when unset)."""
    value = config.get(name)
    if value in (None, ""):
        return None
    moment = parse_source_timestamp(str(value))
    if moment is None:
        msg = f"setting '{name}' is {value!r}, not an ISO 8601 date or date-time"
        raise ExnatonSourceError(msg)
    return moment
