"""BENCHMARKS.md from a results payload of benchmarks.run."""

from __future__ import annotations

from pathlib import Path

PHYSICAL = "physical limit: fetch + parse + COPY (psycopg 3)"
DLT = "peer: dlt default (append)"
WHOLE = "ours: meltano run tap-exnaton target-postgres dbt (source to marts)"
WHOLE_FIRST_RUN = "ours: the same, first run of a fresh checkout (dbt parses the project)"
EL_DAY = "ours: meltano run tap-exnaton target-postgres (meter_day)"
EL_READING = "ours: meltano run tap-exnaton target-postgres (reading)"
RSS_LIMIT_MB = 300
# issue 17 and 18's targets
WHOLE_VS_DLT = 2.5
EL_VS_PHYSICAL = 0.5
BACKFILL_VS_DLT = 2
BACKFILL_EL_LIMIT_S = 2.5
BACKFILL_DBT_LIMIT_S = 4
QUARTER_LIMIT_S = 20
QUARTER_EL_LIMIT_S = 10
QUARTER_DBT_LIMIT_S = 3
SLOPE_LIMIT_MS = 1.5
YEAR_DAILY_REQ_S = 600


# The hand-kept log of what each change did, below this heading in BENCHMARKS.md, survives a new report.
HISTORY_HEADING = "## Changes and their effect"


def write_report(payload: dict, output: Path) -> None:
    output.write_text("\n".join(_lines(payload)) + "\n" + _kept_history(output))


def _kept_history(output: Path) -> str:
    text = output.read_text() if output.exists() else ""
    start = text.find(HISTORY_HEADING)
    return "" if start < 0 else "\n" + text[start:]


def _lines(payload: dict) -> list[str]:
    facts, size, results = payload["facts"], payload["size"], payload["results"]
    lines = [
        "# Benchmarks",
        "",
        f"Made by `make bench` (`python -m benchmarks.run`) on {facts['date']}: {size['meters']} meters × "
        f"{size['days']} days = {size['readings']:,} readings of synthetic data in the exact Exnaton export "
        f"format, served over HTTP on 127.0.0.1, into one PostgreSQL; median of {payload['repeat']} runs.",
        "",
        f"Machine: {facts['cores']} cores, {facts['memory_gib']} GiB, Python {facts['python']}, PostgreSQL "
        f"{facts['postgresql']}, meltano {facts['meltano']}, singer-sdk {facts['singer-sdk']}, psycopg "
        f"{facts['psycopg']}; load average at start {facts['load_average_at_start']} (other work on the machine "
        "slows every figure alike).",
        "",
        "## Load throughput",
        "",
        "Extract+load runs from the start to the loader's exit (its last batch committed); the dbt phase is the",
        "rest of the run (Meltano starting dbt included). Both come from sampling the process tree every 50 ms.",
        "",
        "| Step | Wall s (median) | Extract+load s | dbt phase s | Readings/s | Peak RSS MB (per process) | Runs s |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, figure in results.items():
        if "rows_per_s" not in figure:
            continue
        rss = ", ".join(f"{proc} {mb}" for proc, mb in figure["peak_rss_mb"].items())
        lines.append(
            f"| {name} | {figure['wall_s']} | {figure.get('extract_load_s', '–')} | "
            f"{figure.get('dbt_phase_s', '–')} | {figure['rows_per_s']:,} | {rss} | {figure['runs_s']} |"
        )
    lines += _cpu_lines(results)
    lines += ["", "## Targets", "", "| Target | Measured | Verdict |", "|---|---|---|"]
    lines += _targets(results)
    if "api" in results:
        lines += ["", "## API under load (wrk, gunicorn 3 workers × 4 threads)", ""]
        lines += _api_lines(results["api"])
    lines += [
        "",
        "## How to run",
        "",
        "```bash",
        "make bench                                   # default: 20 meters × 365 days, 3 runs each",
        ".venv/bin/python -m benchmarks.run --meters 4 --days 30 --repeat 1 --only physical,el",
        ".venv/bin/python -m benchmarks.run --repeat 1 --only fleet,quarter,slope   # the fleet shapes alone",
        ".venv/bin/python -m benchmarks.quarter_el --meters 10000 --runs 1         # quarter extract+load, CPU per process",
        ".venv/bin/python -m benchmarks.http_clients --requests 4000               # CPU per request of the HTTP transports",
        "```",
        "",
        "The peer (dlt) gets its own virtualenv in `benchmarks/.venv-peer` on first use. The API step needs",
        "`wrk` (`apt-get install wrk`). Raw figures: `benchmarks/results/*.json`.",
    ]
    return lines


def _cpu_lines(results: dict) -> list[str]:
    """CPU seconds per process of each step: where a run's wall time went on 2 cores. The source server runs in
    the benchmark's own process and is not counted here."""
    rows = [
        f"| {name} | {figure['wall_s']} | "
        + ", ".join(
            f"{proc} {seconds}" for proc, seconds in sorted(figure["cpu_s"].items(), key=lambda kv: -kv[1])
        )
        + " |"
        for name, figure in results.items()
        if figure.get("cpu_s")
    ]
    if not rows:
        return []
    return [
        "",
        "CPU seconds per process (user + system, from the same sampling; the source server is not counted):",
        "",
        "| Step | Wall s | CPU s per process |",
        "|---|---:|---|",
        *rows,
    ]


def _ratio(results: dict, numerator: str, denominator: str) -> float | None:
    if numerator in results and denominator in results:
        return results[numerator]["rows_per_s"] / results[denominator]["rows_per_s"]
    return None


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def _ratio_row(target: str, ratio: float, aim: float, detail: str) -> str:
    """A table row for a target of the form "at least ``aim`` times a peer"."""
    return f"| {target} | {ratio:.2f}× ({detail}) | {_verdict(ratio >= aim)} |"


def _targets(results: dict) -> list[str]:
    rows = []
    whole_vs_dlt = _ratio(results, WHOLE, DLT)
    if whole_vs_dlt is not None:
        rows.append(
            _ratio_row(
                f"Source to marts ≥ {WHOLE_VS_DLT}× dlt default's load alone",
                whole_vs_dlt,
                WHOLE_VS_DLT,
                f"{results[WHOLE]['rows_per_s']:,} vs {results[DLT]['rows_per_s']:,} readings/s",
            )
        )
    first_run_vs_dlt = _ratio(results, WHOLE_FIRST_RUN, DLT)
    if first_run_vs_dlt is not None:
        rows.append(
            f"| (for comparison) the first run of a fresh checkout vs dlt | {first_run_vs_dlt:.2f}× | – |"
        )
    whole_vs_physical = _ratio(results, WHOLE, PHYSICAL)
    if whole_vs_physical is not None:
        rows.append(f"| (for scale) source to marts vs the physical limit | {whole_vs_physical:.2f}× | – |")
    el_vs_physical = _ratio(results, EL_DAY, PHYSICAL)
    if el_vs_physical is not None:
        rows.append(
            _ratio_row(
                f"Extract+load (meter_day) ≥ {EL_VS_PHYSICAL}× the physical limit, same run",
                el_vs_physical,
                EL_VS_PHYSICAL,
                f"{results[EL_DAY]['wall_s']} s vs {results[PHYSICAL]['wall_s']} s",
            )
        )
    layouts = _ratio(results, EL_DAY, EL_READING)
    if layouts is not None:
        rows.append(f"| (before/after) EL meter_day vs reading layout | {layouts:.2f}× | – |")
    rows += _memory_rows(results)
    rows += _fleet_rows(results)
    if "dbt models" in results:
        dbt = results["dbt models"]
        ratio = dbt["incremental_to_full"]
        rows.append(
            f"| Incremental dbt run after one new day ≤ 10% of the full build (model time) | {ratio:.1%} "
            f"({dbt['incremental_one_day_model_s']} s vs {dbt['full_build_model_s']} s) | {_verdict(ratio <= 0.10)} |"
        )
    api = results.get("api", {})
    if "one_day_readings" in api:
        day = api["one_day_readings"]
        ok = day["requests_per_s"] >= 1000 and day["errors"] == 0
        rows.append(
            f"| One-day readings ≥ 1,000 req/s at 16 connections, 0 errors | {day['requests_per_s']:,.0f} req/s, "
            f"p99 {day['p99_ms']:.1f} ms, {day['errors']} errors | {_verdict(ok)} |"
        )
        if "year_daily_energy" in api:
            year = api["year_daily_energy"]
            ok = year["requests_per_s"] >= YEAR_DAILY_REQ_S and year["errors"] == 0
            rows.append(
                f"| Year of daily energy ≥ {YEAR_DAILY_REQ_S} req/s at 16 connections, 0 errors | "
                f"{year['requests_per_s']:,.0f} req/s, p99 {year['p99_ms']:.1f} ms, {year['errors']} errors | "
                f"{_verdict(ok)} |"
            )
        month, base = api["month_readings"]["p50_ms"], api["month_readings_psycopg_p50_ms"]
        rows.append(
            f"| Month of readings (2,688 rows): API p50 ≤ 2× the same SQL through psycopg | {month:.1f} ms vs "
            f"{base:.1f} ms = {month / base:.2f}× | {_verdict(month <= 2 * base)} |"
        )
    return rows


def _labelled(results: dict, prefix: str) -> tuple[str, dict] | None:
    """The result whose label starts with ``prefix`` (fleet labels end with their sizes)."""
    return next(((name, figure) for name, figure in results.items() if name.startswith(prefix)), None)


def _fleet_rows(results: dict) -> list[str]:
    from benchmarks.fleet import BACKFILL, BACKFILL_DLT, COST_PER_METER, QUARTER, QUARTER_DELAYED

    rows = []
    ours, peer = _labelled(results, BACKFILL), _labelled(results, BACKFILL_DLT)
    if ours and peer:
        ratio = ours[1]["rows_per_s"] / peer[1]["rows_per_s"]
        rows.append(
            _ratio_row(
                f"Fleet backfill (1,000 meters × 2 days): source to marts ≥ {BACKFILL_VS_DLT}× dlt default",
                ratio,
                BACKFILL_VS_DLT,
                f"{ours[1]['wall_s']} s vs {peer[1]['wall_s']} s",
            )
        )
    if ours:
        rows += _phase_rows("Fleet backfill", ours[1], BACKFILL_EL_LIMIT_S, BACKFILL_DBT_LIMIT_S)
    quarter = _labelled(results, QUARTER)
    if quarter:
        wall = quarter[1]["wall_s"]
        rows.append(
            f"| Quarter-hourly, 10,000 meters, one new reading each: whole run ≤ {QUARTER_LIMIT_S} s | "
            f"{wall} s | {_verdict(wall <= QUARTER_LIMIT_S)} |"
        )
        rows += _phase_rows("Quarter-hourly", quarter[1], QUARTER_EL_LIMIT_S, QUARTER_DBT_LIMIT_S)
        if "raw_rows_written" in quarter[1]:
            written, new = quarter[1]["raw_rows_written"], quarter[1]["new_readings"]
            rows.append(
                f"| Quarter-hourly: no more than the new readings written to raw | {written:,} raw rows holding "
                f"{quarter[1]['raw_readings_written']:,} readings for {new:,} new | "
                f"{_verdict(quarter[1]['raw_readings_written'] <= new)} |"
            )
    delayed = _labelled(results, QUARTER_DELAYED)
    if delayed:
        rows.append(f"| (apart) the same with 50 ms per source response | {delayed[1]['wall_s']} s | – |")
    if "fleet slope" in results:
        slope = results["fleet slope"]
        walls = ", ".join(f"{int(size):,}: {wall} s" for size, wall in slope["walls_s"].items())
        rows.append(
            f"| Slope ≤ {SLOPE_LIMIT_MS} ms of wall time per additional meter (fleet stream) | "
            f"{slope['ms_per_meter']} ms ({walls}) | {_verdict(slope['ms_per_meter'] <= SLOPE_LIMIT_MS)} |"
        )
    largest = [
        figure
        for name, figure in results.items()
        if name.startswith((QUARTER, QUARTER_DELAYED, COST_PER_METER)) and "10,000 meters" in name
    ]
    peaks = [(mb, proc) for figure in largest for proc, mb in figure.get("peak_rss_mb", {}).items()]
    if peaks:
        mb, proc = max(peaks)
        rows.append(
            f"| Peak RSS of each process < {RSS_LIMIT_MB} MB at 10,000 meters | largest: {proc} {mb} MB | "
            f"{_verdict(mb < RSS_LIMIT_MB)} |"
        )
    return rows


def _phase_rows(shape: str, figure: dict, el_limit: float, dbt_limit: float) -> list[str]:
    rows = []
    if "extract_load_s" in figure:
        el = figure["extract_load_s"]
        rows.append(f"| {shape}: extract+load ≤ {el_limit} s | {el} s | {_verdict(el <= el_limit)} |")
    if "dbt_phase_s" in figure:
        dbt = figure["dbt_phase_s"]
        rows.append(f"| {shape}: dbt phase ≤ {dbt_limit} s | {dbt} s | {_verdict(dbt <= dbt_limit)} |")
    return rows


def _memory_rows(results: dict) -> list[str]:
    """The limit holds for the source-to-marts pipeline; the per-reading layout is shown for comparison."""
    rows = []
    for steps, label, judged in (
        ((WHOLE, WHOLE_FIRST_RUN, EL_DAY), "source to marts", True),
        ((EL_READING,), "reading layout, for comparison", False),
    ):
        peaks = [
            (mb, proc) for step in steps for proc, mb in results.get(step, {}).get("peak_rss_mb", {}).items()
        ]
        if not peaks:
            continue
        mb, proc = max(peaks)
        verdict = _verdict(mb < RSS_LIMIT_MB) if judged else "–"
        rows.append(
            f"| Peak RSS of each process < {RSS_LIMIT_MB} MB ({label}) | largest: {proc} {mb} MB | {verdict} |"
        )
    return rows


def _api_lines(api: dict) -> list[str]:
    if "skipped" in api:
        return [f"Skipped: {api['skipped']}"]
    lines = [
        "| Scenario | Connections | Req/s | p50 ms | p99 ms | Errors | CPU ms per request: API, PostgreSQL |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in (
        "one_day_readings",
        "month_readings",
        "year_daily_energy",
        "load_readings_32c",
        "load_energy_32c",
    ):
        if name not in api:
            continue
        figure = api[name]
        lines.append(
            f"| {name.replace('_', ' ')} | {figure['connections']} | {figure['requests_per_s']:,.0f} | "
            f"{figure['p50_ms']:.1f} | {figure['p99_ms']:.1f} | {figure['errors']} | {_cpu_split(figure)} |"
        )
    lines.append(
        f"| same month SQL through psycopg (baseline) | 1 | – | {api['month_readings_psycopg_p50_ms']:.1f} | – | – | – |"
    )
    return lines


def _cpu_split(figure: dict) -> str:
    cpu = figure.get("cpu_ms_per_request")  # absent in results written before it was measured
    return f"{cpu['api']:.2f}, {cpu['postgres']:.2f}" if cpu else "–"
