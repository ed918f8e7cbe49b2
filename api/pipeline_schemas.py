"""Schemas of the pipeline endpoints: Meltano's run history and the freshness of the data."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.schemas import EXAMPLE_MUID, PRINTABLE, FormatArgs, Moment

RUN_STATES = ["success", "failed", "running"]


class RunsArgs(FormatArgs):
    state = fields.String(
        validate=validate.OneOf(RUN_STATES),
        metadata={"description": "Only runs in this state", "example": "failed"},
    )
    since = Moment(
        metadata={
            "description": "Only runs started at or after this instant (ISO 8601; UTC without offset)",
            "example": "2026-12-01T00:00:00Z",
        }
    )
    state_id = fields.String(
        validate=[validate.Length(1, 200), PRINTABLE],
        metadata={
            "description": "Only runs of this pipeline (Meltano's state id)",
            "example": "dev:tap-exnaton-to-target-postgres",
        },
    )


class FailedMeterSchema(Schema):
    muid = fields.String(
        allow_none=True,
        metadata={
            "description": "The meter (null: a stream whose meter never loaded)",
            "example": EXAMPLE_MUID,
        },
    )
    stream_name = fields.String(metadata={"description": "The tap stream of the meter", "example": "muid_2"})
    error = fields.String(
        metadata={
            "description": "Why the meter's source failed, as the tap said it in one line",
            "example": "muid_2: GET …/1db7649e-9342-4e04-97c7-f0ebb88ed1f8.json failed with HTTP 503 "
            "Service Unavailable (server error) (gave up after 4 attempts)",
        }
    )


class RunSchema(Schema):
    id = fields.Integer(
        metadata={"description": "Meltano's id of the run (table meltano.runs)", "example": 42}
    )
    run_id = fields.UUID(metadata={"example": "01a2358a-fa08-7203-8ae8-2a0f5a91c0f1"})
    state_id = fields.String(
        metadata={
            "description": "The pipeline: Meltano's state id, under which its bookmarks are kept",
            "example": "dev:tap-exnaton-to-target-postgres",
        }
    )
    state = fields.String(
        validate=validate.OneOf(RUN_STATES),
        metadata={
            "description": "success, failed or running (a run marked running without a heartbeat for 5 minutes "
            "is failed)",
            "example": "success",
        },
    )
    trigger = fields.String(
        allow_none=True, metadata={"description": "What started it (cli, a schedule…)", "example": "cli"}
    )
    started_at = fields.DateTime(metadata={"example": "2026-12-02T06:57:10.383803+00:00"})
    ended_at = fields.DateTime(
        allow_none=True,
        metadata={"description": "Null while running", "example": "2026-12-02T06:57:16.463609+00:00"},
    )
    duration_seconds = fields.Float(
        metadata={
            "description": "ended_at - started_at; while running, the time since it started",
            "example": 6.08,
        }
    )
    readings_loaded = fields.Integer(
        metadata={
            "description": "15-minute readings of the run's meters whose copy in the marts this run loaded "
            "(loaded_at within the run); counted once dbt has built them",
            "example": 384,
        }
    )
    failed_meters = fields.List(fields.Nested(FailedMeterSchema))
    error = fields.String(
        allow_none=True,
        metadata={"description": "Meltano's reason for a failed run", "example": "Extractor failed"},
    )


class FreshnessSchema(Schema):
    last_success_at = fields.DateTime(
        allow_none=True,
        metadata={
            "description": "When the newest successful run ended",
            "example": "2026-12-02T06:57:51+00:00",
        },
    )
    last_loaded_at = fields.DateTime(
        allow_none=True,
        metadata={"description": "The newest load time in the marts", "example": "2026-12-02T06:57:51+00:00"},
    )
    age_seconds = fields.Float(
        allow_none=True, metadata={"description": "Seconds since last_success_at", "example": 312.5}
    )
    stale_after_seconds = fields.Integer(
        metadata={"description": "The server's threshold (API_STALE_AFTER_S)", "example": 1800}
    )
    stale = fields.Boolean(
        metadata={
            "description": "No successful run yet, or the last one is older than the threshold",
            "example": False,
        }
    )
