"""The loader in-process, as a test suite builds it (MeltanoLabs' builds hundreds of targets): building a
target opens no connection, so many of them do not run PostgreSQL out of connections and a wrong port fails
when the target is used, not when it is built."""

from __future__ import annotations

import io
import json

import psycopg
import pytest
from target_postgres_raw import TargetPostgresRaw

CONFIG = {"sqlalchemy_url": "postgresql+psycopg://", "default_target_schema": "in_process"}
SCHEMA = {
    "type": "SCHEMA",
    "stream": "things",
    "key_properties": ["id"],
    "schema": {"properties": {"id": {"type": "integer"}}},
}
RECORD = {"type": "RECORD", "stream": "things", "record": {"id": 1}}


def sessions() -> int:
    with psycopg.connect("") as connection:  # the PG* variables
        return connection.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchone()[0]


def messages(*lines: dict) -> io.StringIO:
    return io.StringIO("".join(json.dumps(line) + "\n" for line in lines))


def test_building_targets_opens_no_connection_and_a_finished_load_keeps_no_lock():
    before = sessions()
    targets = [TargetPostgresRaw(config=CONFIG) for _ in range(20)]
    assert sessions() == before
    targets[0].listen(messages(SCHEMA, RECORD))
    assert targets[0].pipeline_lock is None, "the lock outlived the end of the input"


def test_a_wrong_port_fails_when_the_target_is_used():
    target = TargetPostgresRaw(config={**CONFIG, "sqlalchemy_url": "postgresql+psycopg://127.0.0.1:1/x"})
    with pytest.raises(Exception, match=r"127\.0\.0\.1.*port 1"):
        target.listen(messages(SCHEMA))
