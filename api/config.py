"""API settings, all from the environment (12-factor); `create_app(overrides)` may replace any of them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


@dataclass(frozen=True)
class Settings:
    """What the API reads from the environment (see api/README.md for the table)."""

    # libpq connection string; empty means libpq's own PG* variables.
    conninfo: str = ""
    cors_origins: list[str] = field(default_factory=lambda: _list("API_CORS_ORIGINS"))
    api_keys: list[str] = field(default_factory=lambda: _list("API_KEYS"))
    max_buckets: int = field(default_factory=lambda: _int("API_MAX_BUCKETS", 10_000))
    max_measurement_limit: int = field(default_factory=lambda: _int("API_MAX_MEASUREMENT_LIMIT", 50_000))
    statement_timeout_ms: int = field(default_factory=lambda: _int("API_STATEMENT_TIMEOUT_MS", 5000))
    connect_timeout_s: int = field(default_factory=lambda: _int("API_CONNECT_TIMEOUT_S", 3))
    pool_size: int = field(default_factory=lambda: _int("API_POOL_SIZE", 8))
    default_timezone: str = field(default_factory=lambda: os.environ.get("API_DEFAULT_TZ", "Europe/Zurich"))
    marts_schema: str = field(default_factory=lambda: os.environ.get("API_MARTS_SCHEMA", "marts"))
    # The data is stale when the newest successful pipeline run ended longer ago: twice the quarter-hourly
    # schedule of meltano.yml.
    stale_after_s: int = field(default_factory=lambda: _int("API_STALE_AFTER_S", 1800))


def database_conninfo() -> str:
    """PG* of the environment (or of the embedded server when PGHOST is not set, as for the pipeline), with
    API_PGUSER/API_PGPASSWORD in place of the user when set: the API's least-privilege role."""
    from psycopg.conninfo import make_conninfo

    from tools.db import conninfo, pg_environment

    role = {"user": os.environ.get("API_PGUSER"), "password": os.environ.get("API_PGPASSWORD")}
    return make_conninfo(conninfo(pg_environment()), **{k: v for k, v in role.items() if v})
