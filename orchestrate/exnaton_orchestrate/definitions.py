"""The code location (no `from __future__ import annotations`: Dagster reads the context hints at run time).

Meter shards and the mission's streams as Meltano assets, the dbt models downstream.

- ``raw/meter_shards``: the fleet in SHARD_COUNT fixed partitions, each a ``meltano run tap-exnaton
  target-postgres`` of its shard with its own state id and run dir; retried, at most two loading at once
  (pool ``meltano_load``, limit in dagster.yaml).
- ``raw/muid_1``, ``raw/muid_2``: the mission's ``meltano run tap-exnaton target-postgres`` (its state id).
- the dbt models, through the dbt utility's ``dbt_invoker_locked`` (behind the pipeline lock).
- jobs named after meltano.yml's jobs, and meltano.yml's schedules on them.
"""

import os

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from exnaton_orchestrate import project
from exnaton_orchestrate.database import prepare

SHARDS = dg.StaticPartitionsDefinition([str(k) for k in range(project.SHARD_COUNT)])
LOAD_POOL = "meltano_load"
SHARDS_KEY = dg.AssetKey(["raw", "meter_shards"])
MISSION_STREAMS = ("muid_1", "muid_2")
# The dbt source of the tap's raw tables (transform/models/staging/exnaton/_exnaton__sources.yml).
RAW_SOURCE = "exnaton"
# A shard that fails (a source down, the pipeline lock held by a dbt build) runs again: the tap resumes
# from the shard's bookmarks, and fct_readings dedups whatever a retry sends twice.
LOAD_RETRIES = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


def _meltano_step(
    context: AssetExecutionContext | dg.OpExecutionContext, args: list[str], env: dict[str, str]
) -> dict:
    prepare(context.log)
    try:
        seconds = project.run_meltano(args, env, context.log)
    except project.CommandFailed as exc:
        # The step's error in the UI and the run history: Meltano's last lines name the failed meters.
        raise dg.Failure(description=f"{exc}\n{exc.tail}", allow_retries=True) from None
    return {
        "worker": project.worker_identity(),
        "seconds": round(seconds, 2),
        "command": "meltano " + " ".join(args),
    }


@dg.asset(
    key=SHARDS_KEY,
    partitions_def=SHARDS,
    retry_policy=LOAD_RETRIES,
    pool=LOAD_POOL,
    group_name="extract_load",
    kinds={"meltano", "postgres"},
    description="One shard of the fleet's meters (crc32(muid) mod 4): meltano run tap-exnaton target-postgres "
    "with TAP_EXNATON_SHARD_INDEX, its own state id (--state-id-suffix shard-K) and run dir.",
)
def meter_shards(context: AssetExecutionContext) -> dg.MaterializeResult:
    index = int(context.partition_key)
    args = ["run", "--state-id-suffix", project.shard_state_suffix(index), "tap-exnaton", "target-postgres"]
    metadata = _meltano_step(context, args, project.shard_env(index))
    return dg.MaterializeResult(metadata={"shard": index, **metadata})


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["raw", stream], group_name="extract_load", kinds={"meltano", "postgres"})
        for stream in MISSION_STREAMS
    ],
    retry_policy=LOAD_RETRIES,
    pool=LOAD_POOL,
    description="The mission's meltano run tap-exnaton target-postgres (streams muid_1, muid_2; the state id of "
    "a plain meltano run, so make run and the orchestrator share bookmarks).",
)
def mission_streams(context: AssetExecutionContext):
    metadata = _meltano_step(
        context,
        ["run", "tap-exnaton", "target-postgres"],
        {"MELTANO_SYS_DIR_ROOT": str(project.run_dir("mission"))},
    )
    for stream in MISSION_STREAMS:
        yield dg.MaterializeResult(asset_key=["raw", stream], metadata=metadata)


class Translator(DagsterDbtTranslator):
    """dbt sources are the raw tables (``raw/<table>``); a model reading raw also reads every shard's tables
    (fct_readings reads every table of the raw schema)."""

    def get_asset_spec(self, manifest, unique_id, project_):
        spec = super().get_asset_spec(manifest, unique_id, project_)
        node = manifest["sources"].get(unique_id)
        if node is not None:
            # The tap's tables are raw/<table>; another source (Meltano's state) keeps its source's name.
            prefix = "raw" if node["source_name"] == RAW_SOURCE else node["source_name"]
            return spec.replace_attributes(key=dg.AssetKey([prefix, node["name"]]))
        spec = spec.replace_attributes(group_name="transform")
        if _reads_raw(manifest, unique_id):
            spec = spec.merge_attributes(deps=[SHARDS_KEY])
        return spec


def _reads_raw(manifest: dict, unique_id: str) -> bool:
    """Whether a model reads a raw source, itself or through ephemeral models (which are no assets: the
    readings mart reads raw through the per-layout ephemeral staging models)."""
    for parent in manifest.get("parent_map", {}).get(unique_id, []):
        if parent.startswith("source.") and manifest["sources"][parent]["source_name"] == RAW_SOURCE:
            return True
        node = manifest["nodes"].get(parent, {})
        if node.get("config", {}).get("materialized") == "ephemeral" and _reads_raw(manifest, parent):
            return True
    return False


# The whole-table tests run in the dbt-full-test job, as in meltano.yml's `build` command.
@dbt_assets(manifest=project.MANIFEST, exclude="tag:whole_table", dagster_dbt_translator=Translator())
def dbt_models(context: AssetExecutionContext, dbt: DbtCliResource):
    context.log.info(f"dbt step on {project.worker_identity()}")
    # dagster-dbt runs the executable with this process's environment: the one `meltano invoke` would give.
    os.environ.update(project.dbt_env())
    events = 0
    for event in dbt.cli(["build"], context=context).stream():
        events += 1
        yield event
    if not events:
        # dagster-dbt reads dbt's JSON log on stdout; an executable that logs elsewhere would pass silently.
        raise dg.Failure(description=f"{project.dbt_executable()} wrote no dbt events on stdout")


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(project.dbt_project_dir()),
        profiles_dir=project.dbt_env()["DBT_PROFILES_DIR"],
        dbt_executable=str(project.dbt_executable()),
    )


# Jobs named after meltano.yml's jobs (the schedules name them) plus the shards' own job for backfills.
JOBS = {
    "exnaton-pipeline": dg.define_asset_job(
        "exnaton_pipeline",
        selection=dg.AssetSelection.assets(mission_streams) | dg.AssetSelection.assets(dbt_models),
        description="The mission's pipeline: meltano run tap-exnaton target-postgres dbt (muid_1, muid_2).",
    ),
    "dbt": dg.define_asset_job(
        "dbt", selection=dg.AssetSelection.assets(dbt_models), description="meltano run dbt: every model."
    ),
}


@dg.op(description="meltano run dbt-full-test: every data test over every row (the dbt utility's test-all).")
def run_dbt_full_test(context: dg.OpExecutionContext) -> None:
    _meltano_step(
        context, ["run", "dbt-full-test"], {"MELTANO_SYS_DIR_ROOT": str(project.run_dir("dbt-full-test"))}
    )


@dg.job(name="dbt_full_test", description="meltano run dbt-full-test: the data tests over every row.")
def dbt_full_test_job():
    run_dbt_full_test()


# Tests only: no asset is materialized, so the job is an op job, through the same Meltano command.
JOBS["dbt-full-test"] = dbt_full_test_job
SHARDS_JOB = dg.define_asset_job(
    "meter_shards_job",
    selection=dg.AssetSelection.assets(meter_shards),
    partitions_def=SHARDS,
    description="One shard's load (a partition); backfill several for the fleet, then run the dbt job.",
)


def schedule_status() -> dg.DefaultScheduleStatus:
    """Running, as Meltano's schedules under an orchestrator; EXNATON_SCHEDULES=stopped leaves them to be
    turned on in the UI (the tests do: a tick during a test would start a run of its own)."""
    stopped = os.environ.get("EXNATON_SCHEDULES", "running") == "stopped"
    return dg.DefaultScheduleStatus.STOPPED if stopped else dg.DefaultScheduleStatus.RUNNING


def schedules() -> list[dg.ScheduleDefinition]:
    defined = []
    for schedule in project.schedules():
        if schedule.job not in JOBS:
            raise ValueError(
                f"meltano.yml: schedule {schedule.name} runs job {schedule.job}, not one of {sorted(JOBS)}"
            )
        defined.append(
            dg.ScheduleDefinition(
                name=schedule.name.replace("-", "_"),
                cron_schedule=schedule.cron,
                job=JOBS[schedule.job],
                execution_timezone="UTC",
                default_status=schedule_status(),
                description=f"meltano.yml schedule {schedule.name}: {schedule.cron}",
            )
        )
    return defined


def executor() -> dg.ExecutorDefinition:
    """Celery workers through the broker (EXNATON_CELERY_BROKER, set by `make orchestrate` when the broker
    answers), else steps in subprocesses of the run."""
    broker = os.environ.get("EXNATON_CELERY_BROKER")
    if not broker:
        return dg.multiprocess_executor
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": broker, "backend": broker})


defs = dg.Definitions(
    assets=[meter_shards, mission_streams, dbt_models],
    jobs=[*JOBS.values(), SHARDS_JOB],
    schedules=schedules(),
    resources={"dbt": dbt_resource()},
    executor=executor(),
)
