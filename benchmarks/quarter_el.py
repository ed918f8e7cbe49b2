"""Extract+load alone of the quarter-hourly fleet shape: what one new reading per meter costs the tap and loader.

    python -m benchmarks.quarter_el --meters 10000

A first `meltano run tap-exnaton target-postgres` loads one day per meter (measurement mode, fleet stream);
then every meter's source gains one 15-minute reading and the next extract+load is timed, with the raw rows
it wrote counted (the ideal: one row per meter and OBIS code in the meter_day layout).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

from benchmarks.fleet import (
    DAY,
    INTERVAL,
    START,
    _append_one_reading,
    batched_watermark,
    fleet_pipeline,
    timed,
    written_since,
)
from benchmarks.run import reset_schemas
from tests.pipeline import create_database, drop_database
from tools.mirror import Mirror
from tools.synthetic import synthetic_meters, write_exports

EXTRACT_LOAD = ("run", "tap-exnaton", "target-postgres")


class _Bench:
    def __init__(self, work) -> None:
        self.work = work


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2, help="quarter-hour runs after the first load")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="e.g. TAP_EXNATON_MAX_CONCURRENT_REQUESTS=4",
    )
    args = parser.parse_args(argv)
    from benchmarks.run import HERE

    bench = _Bench(HERE / ".work")
    meters = synthetic_meters(args.meters, seed=13)
    directory = bench.work / f"quarter-el-source-{args.meters}"
    pg = create_database("exnaton_bench")
    try:
        reset_schemas(pg)
        pipeline = fleet_pipeline(
            bench,
            pg,
            "",
            f"quarter-el-{args.meters}",
            meters,
            TAP_EXNATON_API_MODE="measurement",
            **dict(setting.split("=", 1) for setting in args.setting),
        )
        loaded_until = START + DAY
        write_exports(directory, meters, START, loaded_until)
        runs = [("first load, 1 day", loaded_until)]
        for _ in range(args.runs):
            loaded_until += INTERVAL
            runs.append(("one new reading per meter", loaded_until))
        for index, (label, until) in enumerate(runs):
            if index:
                _append_one_reading(directory, meters, until - INTERVAL)
            watermark = batched_watermark(pg)
            with Mirror(directory).index_measurements() as source:
                pipeline.base_url = source.base_url
                pipeline.settings["TAP_EXNATON_END_DATE"] = until.isoformat()
                before = _own_cpu_s()
                run = timed(pipeline, *EXTRACT_LOAD)
                source_cpu = _own_cpu_s() - before
            if run.returncode != 0:
                print(run.output[-3000:], file=sys.stderr)
                raise SystemExit(f"{label}: exit {run.returncode}")
            rows, readings = written_since(pg, watermark)
            print(
                f"{label}: {args.meters:,} meters, extract+load {run.wall_s:.2f} s, {rows:,} raw rows written "
                f"holding {readings:,} readings, CPU s: "
                + ", ".join(f"{proc} {seconds:.2f}" for proc, seconds in sorted(run.cpu_s.items()))
                + f", source server and sampler (this process) {source_cpu:.2f}, "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    finally:
        drop_database(pg)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
