"""The loader (target-postgres-raw) on a real PostgreSQL, fed Singer messages as a tap writes them: each
batch goes into its table with one COPY, appended (no merge, no temp table, no reflection per batch), the
`_sdc_*` columns filled, and a bookmark (STATE) only once the readings it covers are committed.

singer-sdk's standard target tests and the in-process tests (target-postgres-raw/tests) run in the loader's
own virtualenv, the one Meltano runs: its packages are not in the project's .venv."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.pipeline import FOREIGN_PREFIXES, PROJECT_ROOT, conninfo, wait_until

LOADER_BIN = PROJECT_ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin"
CONFIG = {
    "sqlalchemy_url": "postgresql+psycopg://",
    "default_target_schema": "raw",
    "add_record_metadata": True,
    "validate_records": False,
}
STREAM = "meters"
SCHEMA = {
    "type": "SCHEMA",
    "stream": STREAM,
    "key_properties": ["muid", "day"],
    "schema": {
        "properties": {
            "muid": {"type": ["string"]},
            "day": {"type": ["string"], "format": "date"},
            "last_timestamp": {"type": ["string"], "format": "date-time"},
            "reading_count": {"type": ["integer", "null"]},
            "values": {"type": ["array", "null"], "items": {"type": ["number"]}},
            "timestamps": {"type": ["array", "null"], "items": {"type": ["string"], "format": "date-time"}},
            "tags": {"type": ["array", "null"], "items": {"type": "object", "properties": {}}},
            "source": {"type": ["object", "null"], "properties": {}},
        }
    },
}
# What psql shows for those properties: the layout of target-postgres 0.8.1.
COLUMN_TYPES = {
    "muid": "text",
    "day": "date",
    "last_timestamp": "timestamp without time zone",
    "reading_count": "bigint",
    "values": "numeric[]",
    "timestamps": "text[]",
    "tags": "jsonb[]",
    "source": "jsonb",
    "_sdc_extracted_at": "timestamp without time zone",
    "_sdc_received_at": "timestamp without time zone",
    "_sdc_batched_at": "timestamp without time zone",
    "_sdc_deleted_at": "timestamp without time zone",
    "_sdc_sequence": "bigint",
    "_sdc_table_version": "bigint",
    "_sdc_sync_started_at": "bigint",
}
# Statement-level triggers write down every INSERT, UPDATE and DELETE on the raw table: its statement as the
# client sent it, its transaction and its rows.
AUDIT = """
create table public.audit (kind text, query text, xid xid8, row_count bigint);
create function public.audit() returns trigger language plpgsql as $$
begin
  insert into public.audit select tg_op, current_query(), pg_current_xact_id(), (select count(*) from changed);
  return null;
end $$;
create trigger audit_insert after insert on raw.meters referencing new table as changed
  for each statement execute function public.audit();
create trigger audit_update after update on raw.meters referencing new table as changed
  for each statement execute function public.audit();
create trigger audit_delete after delete on raw.meters referencing old table as changed
  for each statement execute function public.audit();
"""


def record(index: int, *, reading_count: object = 2) -> dict:
    return {
        "type": "RECORD",
        "stream": STREAM,
        "time_extracted": "2023-03-27T06:00:00+00:00",
        "record": {
            "muid": f"meter-{index % 3}",
            "day": f"2023-03-{1 + index % 28:02d}",
            "last_timestamp": f"2023-03-{1 + index % 28:02d}T23:45:00+00:00",
            "reading_count": reading_count,
            "values": [index + 0.25, 1.5],
            "timestamps": [f"2023-03-{1 + index % 28:02d}T23:30:00+00:00", None],
            "tags": [{"status": 'said "ok"\\', "n": index}, None],
            "source": {"file": "export.json", "line": index},
        },
    }


def state(loaded: int) -> dict:
    return {"type": "STATE", "value": {"bookmarks": {STREAM: {"replication_key_value": loaded}}}}


def lines(messages: list[dict]) -> str:
    return "".join(json.dumps(message) + "\n" for message in messages)


def loader_command(tmp_path: Path, **config: object) -> list[str]:
    config_file = tmp_path / "loader-config.json"
    config_file.write_text(json.dumps({**CONFIG, **config}))
    return [str(LOADER_BIN / "target-postgres-raw"), "--config", str(config_file)]


def loader_env(database: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}, **database}


def load(database: dict[str, str], tmp_path: Path, messages: list[dict], **config: object):
    return subprocess.run(
        loader_command(tmp_path, **config),
        input=lines(messages),
        env=loader_env(database),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def emitted_states(stdout: str) -> list[int]:
    return [json.loads(line)["bookmarks"][STREAM]["replication_key_value"] for line in stdout.splitlines()]


def query(database: dict[str, str], statement: str) -> list[tuple]:
    with psycopg.connect(conninfo(database)) as connection:
        return connection.execute(statement).fetchall()


def catalog_reads(database: dict[str, str]) -> int:
    """Scans of the system catalogs in the test database so far, once every other session has ended (a
    session sends its statistics as it ends)."""

    def alone() -> bool:
        return not query(
            database,
            "select 1 from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
        )

    wait_until(alone, timeout=30, what="the loader's sessions to end")
    (reads,) = query(
        database,
        "select sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)) from pg_stat_sys_tables "
        "where schemaname = 'pg_catalog'",
    )[0]
    return int(reads)


def assert_catalogs_read_once_per_load(database: dict[str, str], tmp_path: Path, stream: list[dict]) -> None:
    """Loading ``stream`` into a table of its own (``probe``) in 30 batches reads the catalogs no more than in 3.

    Measured up to three times: a session that finds PostgreSQL's relcache init file stale (autovacuum
    analyzed a catalog in the meantime) reads about 1,500 catalog rows once, whatever it does, and such a
    session can start inside either load; reads per batch show in every try.
    """
    probe = [{**message, "stream": "probe"} if "stream" in message else message for message in stream]
    assert load(database, tmp_path, probe, batch_size_rows=10).returncode == 0  # creates raw.probe
    tries = []
    for _ in range(3):
        reads = catalog_reads(database)
        assert load(database, tmp_path, probe, batch_size_rows=10).returncode == 0
        reads_3_batches, reads = catalog_reads(database) - reads, catalog_reads(database)
        assert load(database, tmp_path, probe, batch_size_rows=1).returncode == 0
        reads_30_batches = catalog_reads(database) - reads
        tries.append((reads_3_batches, reads_30_batches))
        if reads_30_batches - reads_3_batches < 27:
            return
    pytest.fail(f"the catalogs are read per batch ((reads for 3 batches, for 30) in each try: {tries})")


def test_each_batch_is_one_copy_appended_to_its_table_with_the_sdc_columns(database, tmp_path):
    stream = [SCHEMA, *(record(i) for i in range(30)), state(30)]
    first = load(database, tmp_path, stream, batch_size_rows=10)
    assert first.returncode == 0, first.stderr[-3000:]
    assert emitted_states(first.stdout) == [30]
    with psycopg.connect(conninfo(database), autocommit=True) as connection:
        connection.execute(AUDIT)

    # The same records twice more (as a re-run sends them): in 3 batches, then in 30.
    assert load(database, tmp_path, stream, batch_size_rows=10).returncode == 0
    assert load(database, tmp_path, stream, batch_size_rows=1).returncode == 0
    assert_catalogs_read_once_per_load(database, tmp_path, stream)

    statements = query(database, "select kind, query, xid, row_count from public.audit")
    assert {kind for kind, *_ in statements} == {"INSERT"}, "rows were updated or deleted: a merge"
    assert all(q.startswith('copy "raw"."meters" (') for _, q, *_ in statements), statements[0]
    assert len(statements) == 3 + 30 and len({xid for _, _, xid, _ in statements}) == 33, "one COPY a batch"
    assert sum(rows for *_, rows in statements) == 60

    # Duplicates appended, not merged; every `_sdc_*` column there and filled as target-postgres fills it.
    types = dict(
        query(
            database,
            "select column_name, format_type(atttypid, atttypmod) from information_schema.columns c "
            "join pg_attribute a on a.attrelid = 'raw.meters'::regclass and a.attname = c.column_name "
            "where table_schema = 'raw' and table_name = 'meters'",
        )
    )
    assert types == COLUMN_TYPES
    counts = query(
        database,
        "select count(*), count(distinct (muid, day)), count(_sdc_extracted_at), count(_sdc_received_at), "
        "count(_sdc_batched_at), count(_sdc_sequence), count(_sdc_sync_started_at), count(_sdc_deleted_at), "
        "count(_sdc_table_version) from raw.meters",
    )[0]
    assert counts == (90, 30, 90, 90, 90, 90, 90, 0, 0)  # each of the 30 keys three times


def test_values_arrive_as_target_postgres_writes_them(database, tmp_path):
    assert load(database, tmp_path, [SCHEMA, record(7)]).returncode == 0
    row = query(
        database,
        "select day, last_timestamp, reading_count, values, timestamps, tags, source, _sdc_extracted_at "
        "from raw.meters",
    )[0]
    day, last_timestamp, reading_count, values, timestamps, tags, source, extracted_at = row
    assert (day.isoformat(), last_timestamp.isoformat(), reading_count) == (
        "2023-03-08",
        "2023-03-08T23:45:00",
        2,
    )
    assert [str(value) for value in values] == ["7.25", "1.5"]
    assert timestamps == ["2023-03-08T23:30:00+00:00", None]
    assert tags == [{"status": 'said "ok"\\', "n": 7}, None]
    assert source == {"file": "export.json", "line": 7}
    assert extracted_at.isoformat() == "2023-03-27T06:00:00"


def test_a_new_property_adds_its_column_and_earlier_rows_keep_theirs(database, tmp_path):
    assert load(database, tmp_path, [SCHEMA, record(1)]).returncode == 0
    wider = json.loads(json.dumps(SCHEMA))
    wider["schema"]["properties"]["quality"] = {"type": ["string", "null"]}
    new = record(2)
    new["record"]["quality"] = "measured"
    result = load(database, tmp_path, [wider, new])
    assert result.returncode == 0, result.stderr[-3000:]
    assert query(database, "select muid, quality from raw.meters order by muid") == [
        ("meter-1", None),
        ("meter-2", "measured"),
    ]


def test_a_stream_failing_mid_batch_emits_no_bookmark_beyond_the_committed_rows(database, tmp_path):
    stream = [SCHEMA, *(record(i) for i in range(15)), state(15), record(15, reading_count="many")]
    result = load(database, tmp_path, stream, batch_size_rows=10)
    assert result.returncode != 0
    assert "invalid input syntax for type bigint" in result.stderr
    assert query(database, "select count(*) from raw.meters")[0][0] == 10, "the first batch, committed"
    assert emitted_states(result.stdout) == [], "a bookmark for readings that were rolled back"


def test_a_loader_stopped_mid_stream_emits_only_bookmarks_of_committed_rows(database, tmp_path):
    loader = subprocess.Popen(
        loader_command(tmp_path, batch_size_rows=10),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=loader_env(database),
        text=True,
    )
    loader.stdin.write(lines([SCHEMA, *(record(i) for i in range(15)), state(15), record(15)]))
    loader.stdin.flush()

    def first_batch_committed() -> bool:
        return bool(query(database, "select 1 from pg_tables where schemaname = 'raw'")) and (
            query(database, "select count(*) from raw.meters")[0][0] == 10
        )

    wait_until(first_batch_committed, timeout=60, what="the loader's first batch")
    loader.send_signal(signal.SIGTERM)  # what Meltano sends on Ctrl-C: the loader drains, then says so
    stdout, _ = loader.communicate(timeout=60)
    committed = query(database, "select count(*) from raw.meters")[0][0]
    assert emitted_states(stdout) == [15] and committed == 16


def test_standard_target_tests_and_the_in_process_tests_in_the_loaders_virtualenv(database):
    """singer-sdk's standard target tests (target-postgres-raw/tests/test_sdk_standard.py) and the tests that
    build targets in-process, run by the loader's Python."""
    result = subprocess.run(
        [
            str(LOADER_BIN / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            "target-postgres-raw/pyproject.toml",
            "target-postgres-raw/tests",
        ],
        cwd=PROJECT_ROOT,
        env=loader_env(database),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("setting", ["activate_version", "hard_delete"])
def test_settings_of_target_postgres_are_accepted(setting, database, tmp_path):
    result = load(database, tmp_path, [SCHEMA, record(1)], **{setting: True})
    assert result.returncode == 0, result.stderr[-3000:]
