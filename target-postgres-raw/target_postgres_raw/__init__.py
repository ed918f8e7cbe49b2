"""target-postgres whose tables index their key properties instead of holding a primary key (README.md)."""

from __future__ import annotations

import sys
import typing as t

import sqlalchemy
from pipeline_lock import PipelineBusyError, hold_for_load
from target_postgres.connector import PostgresConnector
from target_postgres.sinks import PostgresSink
from target_postgres.target import TargetPostgres

# Postgres cuts longer identifiers to this many bytes.
MAX_IDENTIFIER = 63


class RawTableConnector(PostgresConnector):
    def create_empty_table(self, **kwargs: t.Any) -> sqlalchemy.Table:  # type: ignore[override]
        # The temporary batch tables are copied from the reflected table, so they lose the key too.
        return super().create_empty_table(**{**kwargs, "primary_keys": None})

    def index_key_properties(self, full_table_name: str, keys: t.Sequence[str]) -> None:
        """Replace a primary key of the table (a stock target-postgres made it) by a plain index on ``keys``."""
        _, schema_name, table_name = self.parse_full_table_name(full_table_name)
        with self._connect() as connection, connection.begin():
            quote = connection.dialect.identifier_preparer.quote
            table = f"{quote(schema_name)}.{quote(table_name)}" if schema_name else quote(table_name)
            primary_key = connection.execute(
                sqlalchemy.text(
                    "select conname from pg_constraint where conrelid = to_regclass(:t) and contype = 'p'"
                ),
                {"t": table},
            ).scalar()
            if primary_key:
                connection.execute(
                    sqlalchemy.text(f"alter table {table} drop constraint {quote(primary_key)}")
                )
            if keys:
                index = f"{table_name[: MAX_IDENTIFIER - len('_keys')]}_keys"
                columns = ", ".join(quote(key) for key in keys)
                connection.execute(
                    sqlalchemy.text(f"create index if not exists {quote(index)} on {table} ({columns})")
                )


class RawTableSink(PostgresSink):
    connector_class = RawTableConnector

    def setup(self) -> None:
        super().setup()
        self.connector.index_key_properties(self.full_table_name, self.key_properties)


class TargetPostgresRaw(TargetPostgres):
    """Target for Postgres: raw tables without primary key constraints."""

    name = "target-postgres"
    default_sink_class = RawTableSink

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        # Before the first message is read: a load refused here has written nothing. The connection, and with it
        # the lock, stays checked out of the pool until the end of the input: no sink ever gets it.
        self.pipeline_lock = self.target_connector._engine.raw_connection()
        try:
            hold_for_load(self.pipeline_lock.driver_connection)
        except PipelineBusyError:
            self.pipeline_lock.invalidate()
            raise

    def process_endofpipe(self) -> None:
        super().process_endofpipe()  # every batch written and committed: now the lock may go
        self.pipeline_lock.invalidate()  # closed, never back to the pool (it is in autocommit mode)


def main() -> None:
    """CLI entry point: a load refused by the pipeline lock ends with one clear line and exit code 1."""
    try:
        TargetPostgresRaw.cli()
    except PipelineBusyError as exc:
        print(f"target-postgres: error: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(1)
