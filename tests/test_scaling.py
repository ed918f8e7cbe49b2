"""Scaling pieces that run here: month partitions with partition pruning, and meter shards in parallel."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from tests.conftest import FIXTURE_METERS
from tests.pipeline import MELTANO, PROJECT_ROOT, Pipeline, conninfo
from tools.partitioning import API_QUERY, create_month_partitions, explain
from tools.synthetic import day_start, meters_setting, synthetic_meters, write_exports

pytestmark = pytest.mark.e2e


def test_month_partitions_prune_to_one_partition_and_use_the_index(database, mirror_of, tmp_path):
    source = write_exports(
        tmp_path / "source", FIXTURE_METERS[:1], day_start("2023-01-15"), day_start("2023-04-15")
    )
    settings = {
        "TAP_EXNATON_METERS": meters_setting(FIXTURE_METERS[:1]),
        "TAP_EXNATON_START_DATE": "2023-01-01",
    }
    pipeline = Pipeline(pg=database, workdir=tmp_path, base_url=mirror_of(source).base_url, settings=settings)
    pipeline.meltano("run", "tap-exnaton", "target-postgres", "dbt")
    muid, params = FIXTURE_METERS[0].muid, {"start": "2023-03-10T00:00Z", "end": "2023-03-11T00:00Z"}
    with psycopg.connect(conninfo(database), autocommit=True) as conn:
        assert create_month_partitions(conn) == 4
        plan = explain(conn, "marts.fct_readings_by_month", muid, params["start"], params["end"])
        query = API_QUERY.format(table="{}")
        rows = [
            conn.execute(query.format(table), {"muid": muid, **params}).fetchall()
            for table in ("marts.fct_readings", "marts.fct_readings_by_month")
        ]
    assert "fct_readings_2023_03" in plan
    assert not any(f"fct_readings_2023_0{m}" in plan for m in (1, 2, 4))
    assert "Index" in plan
    assert rows[0] == rows[1] and len(rows[0]) == 96


def test_meter_shards_run_in_parallel_and_load_every_meter_once(database, mirror_of, tmp_path):
    meters = synthetic_meters(6)
    source = write_exports(tmp_path / "source", meters, day_start("2023-03-01"), day_start("2023-03-03"))
    base_url = mirror_of(source).base_url
    settings = {"TAP_EXNATON_METERS": meters_setting(meters), "TAP_EXNATON_START_DATE": "2023-01-01"}
    shards = []
    for index in range(2):
        workdir = tmp_path / f"shard-{index}"
        workdir.mkdir()
        shard = {**settings, "TAP_EXNATON_SHARD_COUNT": "2", "TAP_EXNATON_SHARD_INDEX": str(index)}
        shards.append(Pipeline(pg=database, workdir=workdir, base_url=base_url, settings=shard))
    # Each shard has its own state id and run directory, so both run at once, as docs/scaling.md says. The
    # raw schema and Meltano's tables are made first, as it says too: two runs creating them at once collide.
    shards[0].execute("create schema if not exists raw")
    shards[0].meltano("state", "list")
    running = [
        subprocess.Popen(
            [MELTANO, "run", "--state-id-suffix", f"shard-{index}", "tap-exnaton", "target-postgres"],
            cwd=PROJECT_ROOT,
            env=shard.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index, shard in enumerate(shards)
    ]
    for process in running:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    shards[0].meltano("run", "dbt")
    loaded = dict(shards[0].query("select muid, count(*) from marts.fct_readings group by muid"))
    assert loaded == {meter.muid: 2 * 96 for meter in meters}
    tables = {
        name
        for (name,) in shards[0].query(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        )
    }
    assert tables == {meter.stream_name for meter in meters}
