"""`make bench`: the pipeline against the physical limit and a peer, on the same data and database.

    python -m benchmarks.run [--meters 20] [--days 365] [--repeat 3] [--only physical,dlt,el,whole,dbt,api,...]

The steps physical..api run on --meters x --days through a stream per meter; fleet, quarter and slope are
the fleet shapes of benchmarks/fleet.py (fixed sizes, the fleet stream).

Writes BENCHMARKS.md (table, ratios, machine facts) and benchmarks/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import venv
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

from benchmarks.fleet import step_fleet, step_quarter, step_slope
from benchmarks.load import api_figures
from benchmarks.measure import Measured, median, run_measured
from benchmarks.report import WHOLE, WHOLE_FIRST_RUN
from tests.pipeline import Pipeline, create_database, drop_database
from tools.db import MELTANO_SCHEMA, conninfo, ensure_meltano_schema
from tools.mirror import Mirror
from tools.synthetic import day_start, meters_setting, synthetic_meters, write_exports

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
PEER_VENV = HERE / ".venv-peer"
STEPS = ("physical", "dlt", "el", "whole", "dbt", "api", "fleet", "quarter", "slope")
START = "2023-01-01"
LOADER, DBT = "target-postgres-raw", "dbt_invoker_locked"  # process names, as benchmarks.measure labels them


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}"
    )
    parser.add_argument("--api-seconds", type=int, default=10)
    parser.add_argument(
        "--load-seconds", type=int, default=60, help="the 32-connection load test; 0 skips it"
    )
    parser.add_argument(
        "--fleet-scale", type=float, default=1.0, help="multiplies the meter counts of the fleet shapes"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    return parser.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.meters = synthetic_meters(args.meters)
        self.readings = args.meters * args.days * 96
        self.work = HERE / ".work"
        self.source = write_exports(
            self.work / f"source-{args.meters}x{args.days}",
            self.meters,
            day_start(START),
            day_start(START) + (args.days * (day_start("2023-01-02") - day_start(START))),
        )
        self.results: dict[str, dict] = {}

    def pipeline(self, pg: dict[str, str], base_url: str, name: str, **settings: str) -> Pipeline:
        workdir = self.work / name
        workdir.mkdir(parents=True, exist_ok=True)
        return Pipeline(
            pg=pg,
            workdir=workdir,
            base_url=base_url,
            settings={
                "TAP_EXNATON_METERS": meters_setting(self.meters),
                "TAP_EXNATON_START_DATE": START,
                **settings,
            },
        )

    def record(self, name: str, runs: list[Measured], rows: int, note: str = "") -> None:
        failed = [r for r in runs if r.returncode != 0]
        if failed:
            print(failed[0].output[-3000:], file=sys.stderr)
            raise SystemExit(f"benchmark step {name!r} failed (exit {failed[0].returncode})")
        wall = median([r.wall_s for r in runs])
        peaks: dict[str, float] = {}
        for run in runs:
            for proc, mb in run.peak_rss_mb.items():
                peaks[proc] = max(peaks.get(proc, 0.0), mb)
        self.results[name] = {
            "wall_s": round(wall, 2),
            "rows_per_s": round(rows / wall),
            "runs_s": [round(r.wall_s, 2) for r in runs],
            "peak_rss_mb": {k: round(v) for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])[:4]},
            "note": note,
            **phases(runs),
            "cpu_s": {proc: round(median([r.cpu_s.get(proc, 0.0) for r in runs]), 2) for proc in peaks},
        }
        print(f"{name}: {wall:.2f} s median, {rows / wall:,.0f} readings/s", file=sys.stderr)


def phases(runs: list[Measured]) -> dict[str, float]:
    """Extract+load = start to the loader's exit (the last batch committed); the dbt phase = the rest of the run."""
    ends = [run.ended_s(LOADER) for run in runs]
    if None in ends or not all(DBT in run.seen_s for run in runs):
        return {"extract_load_s": round(median(ends), 2)} if None not in ends else {}
    return {
        "extract_load_s": round(median(ends), 2),
        "dbt_phase_s": round(median([run.wall_s - end for run, end in zip(runs, ends, strict=True)]), 2),
    }


def count(pg: dict[str, str], query: str) -> int:
    with psycopg.connect(conninfo(pg)) as conn:
        return int(conn.execute(query).fetchone()[0])


def check_loaded(bench: Bench, pg: dict[str, str], what: str, query: str) -> None:
    check_count(pg, what, query, bench.readings)


def check_count(pg: dict[str, str], what: str, query: str, expected: int) -> None:
    """A figure only counts when every reading arrived."""
    loaded = count(pg, query)
    if loaded != expected:
        raise SystemExit(f"{what}: {loaded} readings loaded, {expected} expected")


def reset_schemas(pg: dict[str, str]) -> None:
    """An empty database again: data and Meltano's state (bookmarks) in it alike."""
    with psycopg.connect(conninfo(pg), autocommit=True) as conn:
        for schema in ("raw", "staging", "marts", "bench_dlt", "bench_dlt_staging", MELTANO_SCHEMA):
            conn.execute(f"drop schema if exists {schema} cascade")
    ensure_meltano_schema(pg)


def meltano_command(pipeline: Pipeline, *args: str) -> tuple[list[str], dict[str, str]]:
    return [str(Path(sys.executable).parent / "meltano"), *args], pipeline.env()


def step_physical(bench: Bench, pg: dict[str, str], mirror: Mirror) -> None:
    command = [sys.executable, "-m", "benchmarks.physical", mirror.base_url, *[m.muid for m in bench.meters]]
    runs = [run_measured(command, env={**os.environ, **pg}, cwd=str(ROOT)) for _ in range(bench.args.repeat)]
    check_loaded(bench, pg, "physical", "select count(*) from bench_physical")
    bench.record("physical limit: fetch + parse + COPY (psycopg 3)", runs, bench.readings)


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(PEER_VENV)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "dlt[postgres]~=1.31"], check=True)
    return python


def step_dlt(bench: Bench, pg: dict[str, str], mirror: Mirror) -> None:
    runs = []
    for _ in range(bench.args.repeat):
        reset_schemas(pg)
        runs.append(run_dlt(bench, pg, mirror.base_url, [m.muid for m in bench.meters]))
        check_loaded(bench, pg, "dlt", "select count(*) from bench_dlt.readings")
    bench.record("peer: dlt default (append)", runs, bench.readings)


def run_dlt(bench: Bench, pg: dict[str, str], base_url: str, muids: list[str]) -> Measured:
    python = ensure_peer_venv()
    env = {**os.environ, **pg, "BENCH_DLT_DIR": str(bench.work / "dlt"), "RUNTIME__LOG_LEVEL": "WARNING"}
    return run_measured([str(python), str(HERE / "peer_dlt.py"), base_url, *muids], env=env, cwd=str(ROOT))


def step_el(bench: Bench, pg: dict[str, str], mirror: Mirror) -> None:
    # The loader's batch of 200 records suits day records (19,200 readings); one record per reading wants the
    # loader's own default of 10,000 (with 200 it spends its time in thousands of small merges).
    for layout, batch in (("reading", "10000"), ("meter_day", "200")):
        runs = []
        for index in range(bench.args.repeat):
            reset_schemas(pg)
            pipeline = bench.pipeline(
                pg,
                mirror.base_url,
                f"el-{layout}-{index}",
                TAP_EXNATON_RECORD_LAYOUT=layout,
                TARGET_POSTGRES_BATCH_SIZE_ROWS=batch,
            )
            command, env = meltano_command(
                pipeline, "run", "--full-refresh", "tap-exnaton", "target-postgres"
            )
            runs.append(run_measured(command, env=env, cwd=str(ROOT)))
            rows = "count(*)" if layout == "reading" else "sum(reading_count)"
            union = " union all ".join(f"select {rows} as n from raw.{m.stream_name}" for m in bench.meters)
            check_loaded(bench, pg, f"EL {layout}", f"select sum(n) from ({union}) as tables")
        bench.record(f"ours: meltano run tap-exnaton target-postgres ({layout})", runs, bench.readings)


def step_whole(bench: Bench, pg: dict[str, str], mirror: Mirror) -> None:
    """A backfill into an empty database, as an installed project runs it (dbt has parsed the project
    before and reuses that parse), and as the very first run of a fresh checkout (dbt parses everything)."""
    parsed_once = bench.work / "whole-dbt-target"
    warm_up = bench.pipeline(pg, mirror.base_url, "whole-parse", DBT_TARGET_PATH=str(parsed_once))
    warm_up.meltano("invoke", "dbt-postgres", "parse")
    for label, dbt_target in ((WHOLE, parsed_once), (WHOLE_FIRST_RUN, None)):
        runs = []
        for index in range(bench.args.repeat):
            reset_schemas(pg)
            extra = {"DBT_TARGET_PATH": str(dbt_target)} if dbt_target else {}
            pipeline = bench.pipeline(
                pg, mirror.base_url, f"whole-{index}{'' if dbt_target else '-cold'}", **extra
            )
            command, env = meltano_command(pipeline, "run", "tap-exnaton", "target-postgres", "dbt")
            runs.append(run_measured(command, env=env, cwd=str(ROOT)))
            check_loaded(bench, pg, "source to marts", "select count(*) from marts.fct_readings")
        bench.record(label, runs, bench.readings)


def model_seconds(target: Path) -> float:
    results = json.loads((target / "run_results.json").read_text())["results"]
    return sum(r["execution_time"] for r in results if r["unique_id"].startswith("model."))


def step_dbt(bench: Bench, pg: dict[str, str], mirror: Mirror) -> None:
    full, incremental = [], []
    for index in range(bench.args.repeat):
        reset_schemas(pg)
        pipeline = bench.pipeline(pg, mirror.base_url, f"dbt-{index}")
        pipeline.meltano("run", "tap-exnaton", "target-postgres")
        pipeline.meltano("invoke", "dbt-postgres:run")
        full.append(model_seconds(pipeline.workdir / "dbt-target"))
        one_more_day = bench.work / f"source-plus-day-{index}"
        last = day_start(START) + bench.args.days * (day_start("2023-01-02") - day_start(START))
        write_exports(
            one_more_day, bench.meters, day_start(START), last + (day_start("2023-01-02") - day_start(START))
        )
        with Mirror(one_more_day) as longer:
            more = Pipeline(
                pg=pg, workdir=pipeline.workdir, base_url=longer.base_url, settings=pipeline.settings
            )
            more.meltano("run", "tap-exnaton", "target-postgres")
            more.meltano("invoke", "dbt-postgres:run")
        incremental.append(model_seconds(pipeline.workdir / "dbt-target"))
    full_s, incremental_s = median(full), median(incremental)
    bench.results["dbt models"] = {
        "full_build_model_s": round(full_s, 2),
        "incremental_one_day_model_s": round(incremental_s, 2),
        "incremental_to_full": round(incremental_s / full_s, 3),
        "runs_full_s": [round(x, 2) for x in full],
        "runs_incremental_s": [round(x, 2) for x in incremental],
    }


def step_api(bench: Bench, pg: dict[str, str], mirror: Mirror) -> None:
    reset_schemas(pg)
    bench.pipeline(pg, mirror.base_url, "api").meltano("run", "tap-exnaton", "target-postgres", "dbt")
    bench.results["api"] = api_figures(
        pg, bench.meters[0].muid, bench.args.api_seconds, bench.args.load_seconds
    )


STEP_FUNCTIONS = {
    "physical": step_physical,
    "dlt": step_dlt,
    "el": step_el,
    "whole": step_whole,
    "dbt": step_dbt,
    "api": step_api,
    "fleet": step_fleet,
    "quarter": step_quarter,
    "slope": step_slope,
}


def machine_facts(pg: dict[str, str]) -> dict:
    import psutil

    with psycopg.connect(conninfo(pg)) as conn:
        server = conn.execute("show server_version").fetchone()[0]
    versions = {}
    for package in ("meltano", "singer-sdk", "psycopg"):
        from importlib.metadata import version

        versions[package] = version(package)
    return {
        "date": date.today().isoformat(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "postgresql": server,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **versions,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise SystemExit(f"unknown steps: {', '.join(sorted(unknown))}; choose from {', '.join(STEPS)}")
    bench = Bench(args)
    pg = create_database("exnaton_bench")
    try:
        facts = machine_facts(pg)
        with Mirror(bench.source) as mirror:
            for step in steps:
                STEP_FUNCTIONS[step](bench, pg, mirror)
    finally:
        drop_database(pg)
    from benchmarks.report import write_report

    payload = {
        "facts": facts,
        "size": {"meters": args.meters, "days": args.days, "readings": bench.readings},
        "repeat": args.repeat,
        "results": bench.results,
    }
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results_dir / f"{stamp}.json").write_text(json.dumps(payload, indent=2))
    write_report(payload, args.output)
    print(f"wrote {args.output} and benchmarks/results/{stamp}.json", file=sys.stderr)


if __name__ == "__main__":
    main()
