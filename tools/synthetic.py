"""Deterministic meter data in exactly the Exnaton export format.

The real exports (``../shared/data/exnaton``) are ``{"data": [...]}`` with the newest reading first, one
OBIS key per reading, float values with binary noise (``0.17325000000000002``) and a JSON int ``0`` where a
meter exported nothing. This module writes files of that shape for tests and benchmarks.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

UTC = UTC
INTERVAL = timedelta(minutes=15)
IMPORT_OBIS = "0100011D00FF"
EXPORT_OBIS = "0100021D00FF"


@dataclass(frozen=True)
class Meter:
    stream_name: str
    muid: str
    obis_code: str


def synthetic_meters(count: int, *, seed: int = 7) -> list[Meter]:
    """``count`` meters alternating import (consumption) and export (PV feed-in)."""
    rng = random.Random(seed)
    return [
        Meter(
            stream_name=f"meter_{i + 1:04d}",
            muid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            obis_code=IMPORT_OBIS if i % 2 == 0 else EXPORT_OBIS,
        )
        for i in range(count)
    ]


def reading_value(meter: Meter, moment: datetime, rng: random.Random) -> float | int:
    """A plausible 15-minute energy value: a daily load curve for import, a sun curve for export."""
    hour = moment.hour + moment.minute / 60
    if meter.obis_code == EXPORT_OBIS:
        sun = math.sin(math.pi * (hour - 6) / 12)
        if sun <= 0:
            return 0  # an int, as in the real export file
        # Multiplying two floats gives the same binary noise as the source (e.g. 0.17325000000000002).
        return round(sun * rng.uniform(0.1, 0.3), 4) * 1.5
    base = 0.012 + 0.03 * (1 + math.sin(math.pi * (hour - 7) / 12))
    return round(base * rng.uniform(0.6, 1.4), 4)


def meter_readings(meter: Meter, start: datetime, stop: datetime, *, seed: int = 1) -> list[dict]:
    """Readings of ``[start, stop)``, newest first, in the source's exact record shape."""
    rng = random.Random(f"{seed}-{meter.muid}")
    readings = []
    moment = start
    while moment < stop:
        readings.append(
            {
                "measurement": "energy",
                "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "tags": {"muid": meter.muid, "quality": "measured"},
                meter.obis_code: reading_value(meter, moment, rng),
            }
        )
        moment += INTERVAL
    readings.reverse()
    return readings


def dump_export(readings: list[dict]) -> bytes:
    """Serialize like the source: compact JSON, no spaces."""
    return json.dumps({"data": readings}, separators=(",", ":")).encode()


def write_exports(directory: Path, meters: list[Meter], start: datetime, stop: datetime) -> Path:
    """Write one ``<muid>.json`` per meter into ``directory``; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for meter in meters:
        (directory / f"{meter.muid}.json").write_bytes(dump_export(meter_readings(meter, start, stop)))
    return directory


def meters_setting(meters: list[Meter]) -> str:
    """The tap's ``meters`` setting for these meters, as ``TAP_EXNATON_METERS`` takes it."""
    return json.dumps([{"stream_name": m.stream_name, "muid": m.muid} for m in meters])


def day_start(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)
