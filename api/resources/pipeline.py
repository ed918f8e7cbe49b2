"""The pipeline's run history (the runs Meltano records in the database) and the freshness of the data."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from flask_smorest import Blueprint

from api.pipeline_schemas import FreshnessSchema, RunsArgs, RunSchema
from api.responses import check_page, csv_documented, csv_response, queries, settings, wants_csv
from api.schemas import ApiErrorSchema, resolve_moment

blp = Blueprint(
    "pipeline", __name__, url_prefix="/api/v1/pipeline", description="Pipeline runs and data freshness"
)
MAX_RUNS_PAGE_SIZE = 500
RUN_COLUMNS = [
    "id",
    "run_id",
    "state_id",
    "state",
    "trigger",
    "started_at",
    "ended_at",
    "duration_seconds",
    "readings_loaded",
    "failed_meters",
    "error",
]


@blp.route("/runs")
@blp.arguments(RunsArgs, location="query", as_kwargs=False)
@blp.response(200, RunSchema(many=True), description="Runs, newest first; CSV on request")
@blp.alt_response(404, schema=ApiErrorSchema, description="A page beyond the last one")
@blp.paginate(page_size=20, max_page_size=MAX_RUNS_PAGE_SIZE)
@csv_documented(RUN_COLUMNS)
def list_runs(args, pagination_parameters):
    """Runs of the pipeline as Meltano recorded them, newest first, paginated (X-Pagination header).

    Every `meltano run` of an extractor and loader (and so every shard and every orchestrated run) is one
    run: when it started and ended, its state, the readings it loaded and the meters whose source failed.
    `since` is ISO 8601 (UTC without offset). In CSV, `failed_meters` is the failed muids separated by
    spaces.
    """
    filters = {
        "state": args.get("state"),
        "since": resolve_moment(args.get("since"), "UTC"),
        "state_id": args.get("state_id"),
    }
    check_page(pagination_parameters, queries().pipeline_run_count(filters))
    runs = queries().pipeline_runs(filters, pagination_parameters.first_item, pagination_parameters.page_size)
    if wants_csv(args):
        flat = [
            {**run, "failed_meters": " ".join(csv_meter(m) for m in run["failed_meters"])} for run in runs
        ]
        return csv_response(flat, RUN_COLUMNS, "pipeline-runs")
    return runs


def csv_meter(meter: dict) -> str:
    return meter["muid"] or meter["stream_name"]


@blp.route("/freshness")
@blp.response(200, FreshnessSchema)
def freshness():
    """Whether the data is stale: the newest successful run ended longer ago than the server's threshold
    (`API_STALE_AFTER_S`, default 1800 s: twice the quarter-hourly schedule), or there is none."""
    last_success = queries().pipeline_last_success_at()
    threshold = settings().stale_after_s
    age = (datetime.now(UTC) - last_success).total_seconds() if last_success else None
    return {
        "last_success_at": last_success,
        "last_loaded_at": last_loaded_at(),
        "age_seconds": age,
        "stale_after_seconds": threshold,
        "stale": age is None or age > threshold,
    }


def last_loaded_at() -> datetime | None:
    try:
        return queries().last_loaded_at()
    except psycopg.errors.UndefinedTable:
        return None  # no marts before the first dbt build
