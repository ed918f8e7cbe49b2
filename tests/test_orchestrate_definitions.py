"""The code location as Dagster loads it (in the orchestrator's own virtualenv): what each asset will run.

No orchestrator is started here (tests/test_orchestrate.py runs one): these pin the wiring the runs rest on —
one dbt path (the dbt utility's `dbt_invoker_locked`, contract 3), a state id and run dir per shard, the
storage schema — in a few seconds.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.pipeline import PROJECT_ROOT

pytestmark = pytest.mark.e2e

PROBE = """
import json
import dagster as dg
from exnaton_orchestrate import database, project
from exnaton_orchestrate.definitions import SHARDS, defs, dbt_resource

dg.Definitions.validate_loadable(defs)  # what the code server does: duplicate names fail here
repository = defs.get_repository_def()
graph = repository.asset_graph
print(json.dumps({
    "partitions": SHARDS.get_partition_keys(),
    "shard_envs": [project.shard_env(k) for k in range(project.SHARD_COUNT)],
    "suffixes": [project.shard_state_suffix(k) for k in range(project.SHARD_COUNT)],
    "dbt_executable": dbt_resource().dbt_executable,
    "dbt_env": {k: v for k, v in project.dbt_env().items() if k.startswith("DBT_")},
    "jobs": sorted(repository.job_names),
    "schedules": {s.name: [s.cron_schedule, s.job_name] for s in repository.schedule_defs},
    "upstream_of_readings": sorted(
        k.to_user_string() for k in graph.get(dg.AssetKey(["marts", "fct_readings"])).parent_keys
    ),
    "pool": defs.get_assets_def(["raw", "meter_shards"]).op.pool,
    "url": database.dagster_postgres_url({"PGHOST": "/run/pg sock", "PGPORT": "5433", "PGUSER": "me", "PGDATABASE": "exnaton"}),
}))
"""


@pytest.fixture(scope="module")
def loaded(orchestrator_installed) -> dict:
    result = subprocess.run(
        [str(orchestrator_installed / "bin" / "python"), "-c", PROBE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_dbt_assets_run_the_dbt_utilitys_own_executable(loaded):
    utility = next(
        p
        for p in yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())["plugins"]["utilities"]
        if p["name"] == "dbt-postgres"
    )
    assert loaded["dbt_executable"] == str(
        PROJECT_ROOT / ".meltano" / "utilities" / "dbt-postgres" / "venv" / "bin" / utility["executable"]
    )
    assert utility["executable"] == "dbt_invoker_locked"
    assert loaded["dbt_env"]["DBT_PROJECT_DIR"] == str(PROJECT_ROOT / "transform")
    assert loaded["dbt_env"]["DBT_PROFILES_DIR"] == str(PROJECT_ROOT / "transform")


def test_each_shard_has_its_own_state_id_and_run_dir(loaded):
    assert loaded["partitions"] == ["0", "1", "2", "3"]
    envs = loaded["shard_envs"]
    assert [e["TAP_EXNATON_SHARD_INDEX"] for e in envs] == ["0", "1", "2", "3"]
    assert {e["TAP_EXNATON_SHARD_COUNT"] for e in envs} == {"4"}
    assert len({e["MELTANO_SYS_DIR_ROOT"] for e in envs}) == 4
    assert len(set(loaded["suffixes"])) == 4
    assert loaded["pool"] == "meltano_load"


def test_jobs_schedules_and_lineage(loaded):
    assert {"exnaton_pipeline", "dbt", "dbt_full_test", "meter_shards_job"} <= set(loaded["jobs"])
    meltano = yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())["schedules"]
    assert loaded["schedules"] == {
        s["name"].replace("-", "_"): [s["interval"], s["job"].replace("-", "_")] for s in meltano
    }
    assert loaded["upstream_of_readings"] == ["raw/meter_shards", "raw/muid_1", "raw/muid_2", "raw/readings"]


def test_dagster_storage_is_the_pg_database_in_its_own_schema(loaded):
    assert loaded["url"] == (
        "postgresql+psycopg2://me@/exnaton?host=%2Frun%2Fpg+sock&port=5433&options=-csearch_path%3Ddagster"
    )
