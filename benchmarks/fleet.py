"""Fleet shapes of `make bench`: many meters with little history each, through the fleet stream.

- backfill: 1,000 meters x 2 days, source to marts, against dlt on the same files;
- quarter-hourly: 10,000 meters in measurement mode; after a first load one new 15-minute reading per meter
  appears, and the whole `meltano run tap-exnaton target-postgres dbt` that picks it up is timed (again with
  50 ms added to every source response);
- cost per meter: source to marts at 100 / 1,000 / 10,000 meters x 1 day, and the slope between them.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

from benchmarks.measure import Measured, run_measured
from tests.pipeline import Pipeline
from tools.mirror import Mirror
from tools.synthetic import Meter, day_start, meter_readings, synthetic_meters, write_exports

ROOT = Path(__file__).resolve().parent.parent
START = day_start("2023-01-01")
DAY = timedelta(days=1)
INTERVAL = timedelta(minutes=15)
FLEET = {"TAP_EXNATON_STREAM_PER_METER": "false", "TAP_EXNATON_START_DATE": "2023-01-01"}
WHOLE_RUN = ("run", "tap-exnaton", "target-postgres", "dbt")
# Labels start with these words (the sizes follow, scaled by --fleet-scale); the report finds them so.
BACKFILL = "fleet backfill, source to marts:"
BACKFILL_DLT = "fleet backfill, dlt default (append):"
QUARTER = "quarter-hourly, one new reading per meter, whole run:"
QUARTER_DELAYED = "quarter-hourly, 50 ms added to every source response:"
COST_PER_METER = "cost per meter, source to marts:"


def scaled(bench, meters: int) -> int:
    return max(1, round(meters * bench.args.fleet_scale))


def slope_sizes(bench) -> tuple[int, ...]:
    return tuple(scaled(bench, size) for size in (100, 1_000, 10_000))


def fleet_source(work: Path, meters: list[Meter], days: int) -> Path:
    """Export files of ``days`` days per meter, written once and reused."""
    directory = work / f"fleet-source-{len(meters)}x{days}"
    if not (directory / f"{meters[-1].muid}.json").exists():
        write_exports(directory, meters, START, START + days * DAY)
    return directory


def fleet_pipeline(bench, pg: dict[str, str], base_url: str, name: str, meters: list[Meter], **settings):
    workdir = bench.work / name
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "meltano.db").unlink(missing_ok=True)
    meters_file = workdir / "meters.csv"
    meters_file.write_text("muid\n" + "".join(f"{m.muid}\n" for m in meters))
    return Pipeline(
        pg=pg,
        workdir=workdir,
        base_url=base_url,
        settings={**FLEET, "TAP_EXNATON_METERS_FILE": str(meters_file), **settings},
    )


def timed(pipeline: Pipeline, *args: str) -> Measured:
    command = [str(Path(sys.executable).parent / "meltano"), *args]
    return run_measured(command, env=pipeline.env(), cwd=str(ROOT))


def step_fleet(bench, pg: dict[str, str], mirror: Mirror) -> None:
    from benchmarks.run import check_count, reset_schemas, run_dlt

    meters = synthetic_meters(scaled(bench, 1_000), seed=11)
    readings = len(meters) * 2 * 96
    size = f" {len(meters):,} meters × 2 days"
    with Mirror(fleet_source(bench.work, meters, 2)) as source:
        runs, peer = [], []
        for index in range(bench.args.repeat):
            reset_schemas(pg)
            peer.append(run_dlt(bench, pg, source.base_url, [m.muid for m in meters]))
            check_count(pg, "dlt fleet", "select count(*) from bench_dlt.readings", readings)
            reset_schemas(pg)
            runs.append(
                timed(fleet_pipeline(bench, pg, source.base_url, f"fleet-{index}", meters), *WHOLE_RUN)
            )
            check_count(pg, "fleet backfill", "select count(*) from marts.fct_readings", readings)
    bench.record(BACKFILL_DLT + size, peer, readings)
    bench.record(BACKFILL + size, runs, readings)


def step_quarter(bench, pg: dict[str, str], mirror: Mirror) -> None:
    from benchmarks.run import check_count, reset_schemas

    meters = synthetic_meters(scaled(bench, 10_000), seed=13)
    directory = bench.work / "quarter-source"
    reset_schemas(pg)
    settings = {"TAP_EXNATON_API_MODE": "measurement"}
    pipeline = fleet_pipeline(bench, pg, "", "quarter", meters, **settings)
    loaded_until = START + DAY
    write_exports(directory, meters, START, loaded_until)
    with Mirror(directory).index_measurements() as source:
        first = _run_until(pipeline, source.base_url, loaded_until)
    bench.record(f"quarter-hourly, first load: {len(meters):,} meters × 1 day", [first], len(meters) * 96)
    for label, delay in ((QUARTER, 0.0), (QUARTER_DELAYED, 0.05)):
        _append_one_reading(directory, meters, loaded_until)
        loaded_until += INTERVAL
        watermark = batched_watermark(pg)
        with Mirror(directory, delay=delay).index_measurements() as source:
            run = _run_until(pipeline, source.base_url, loaded_until)
        expected = len(meters) * int((loaded_until - START) / INTERVAL)
        check_count(pg, label, "select count(*) from marts.fct_readings", expected)
        name = f"{label} {len(meters):,} meters"
        bench.record(name, [run], len(meters))
        rows, readings = written_since(pg, watermark)
        bench.results[name] |= {
            "raw_rows_written": rows,
            "raw_readings_written": readings,
            "new_readings": len(meters),
        }


def _run_until(pipeline: Pipeline, base_url: str, end: object) -> Measured:
    pipeline.base_url = base_url
    pipeline.settings["TAP_EXNATON_END_DATE"] = end.isoformat()
    return timed(pipeline, *WHOLE_RUN)


def _append_one_reading(directory: Path, meters: list[Meter], moment) -> None:
    """Each meter's export gains the reading of ``moment`` (newest first, like the source)."""
    for meter in meters:
        path = directory / f"{meter.muid}.json"
        export = json.loads(path.read_bytes())
        export["data"][:0] = meter_readings(meter, moment, moment + INTERVAL)
        path.write_bytes(json.dumps(export, separators=(",", ":")).encode())


def step_slope(bench, pg: dict[str, str], mirror: Mirror) -> None:
    from benchmarks.run import check_count, reset_schemas

    walls = {}
    for size in slope_sizes(bench):
        meters = synthetic_meters(size, seed=17)
        with Mirror(fleet_source(bench.work, meters, 1)) as source:
            reset_schemas(pg)
            run = timed(fleet_pipeline(bench, pg, source.base_url, f"slope-{size}", meters), *WHOLE_RUN)
            check_count(pg, f"slope {size}", "select count(*) from marts.fct_readings", size * 96)
        bench.record(f"{COST_PER_METER} {size:,} meters × 1 day", [run], size * 96)
        walls[size] = run.wall_s
    small, large = min(walls), max(walls)
    bench.results["fleet slope"] = {
        "ms_per_meter": round(1000 * (walls[large] - walls[small]) / (large - small), 2),
        "walls_s": {str(size): round(wall, 2) for size, wall in walls.items()},
    }


def batched_watermark(pg: dict[str, str]) -> str:
    from benchmarks.run import count

    try:
        return str(count(pg, "select extract(epoch from max(_sdc_batched_at)) * 1e6 from raw.readings") or 0)
    except Exception:  # no table before the first load
        return "0"


def written_since(pg: dict[str, str], watermark: str) -> tuple[int, int]:
    """Raw rows batched after ``watermark``, and the readings they hold."""
    from benchmarks.run import count

    where = f"from raw.readings where extract(epoch from _sdc_batched_at) * 1e6 > {watermark}"
    return count(pg, f"select count(*) {where}"), count(pg, f"select coalesce(sum(reading_count), 0) {where}")
