"""target-postgres whose raw tables take each batch with one COPY, appended as it came (README.md)."""

from __future__ import annotations

import itertools
import sys
import typing as t
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

import sqlalchemy
from pipeline_lock import PipelineBusyError, hold_for_load
from psycopg import sql
from singer_sdk.io_base import SingerReader
from target_postgres.connector import PostgresConnector
from target_postgres.sinks import PostgresSink
from target_postgres.target import TargetPostgres

# Postgres cuts longer identifiers to this many bytes.
MAX_IDENTIFIER = 63

Converter = Callable[[t.Any], t.Any] | None


def quoted(text: str) -> str:
    """An element of a PostgreSQL array literal, double-quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def item_text(item_type: sqlalchemy.types.TypeEngine, serialize_json: Callable[[t.Any], str]) -> Callable:
    """How one array element of ``item_type`` is written in an array literal."""
    if isinstance(item_type, sqlalchemy.JSON):
        return lambda item: quoted(serialize_json(item))
    if isinstance(item_type, sqlalchemy.Boolean):
        return lambda item: "true" if item else "false"
    if isinstance(item_type, sqlalchemy.Numeric | sqlalchemy.Integer):
        return str  # the number as the tap sent it (an exact decimal): no quotes needed
    return lambda item: quoted(str(item))


def array_literal(element: Callable[[t.Any], str]) -> Callable[[list | None], str | None]:
    """A list (of lists, ...) as the text of a PostgreSQL array; None stays NULL."""

    def literal(value: list | None) -> str | None:
        if value is None:
            return None
        items = [
            "NULL" if item is None else literal(item) if isinstance(item, list) else element(item)
            for item in value
        ]
        return "{" + ",".join(items) + "}"

    return literal


class RawTableConnector(PostgresConnector):
    """The stock connector, plus the three things this loader does on its own connection."""

    def create_empty_table(self, **kwargs: t.Any) -> sqlalchemy.Table:  # type: ignore[override]
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

    def copy_converters(self, columns: Sequence[sqlalchemy.Column]) -> list[Converter]:
        """Per column, what turns a record's value into what COPY gets: the values the stock target's COPY got
        (SQLAlchemy's bind processors: JSON serialized by the target's serializer, numbers as floats), but each
        array as one PostgreSQL array literal, built here (psycopg's list dumper is pure Python, item by item).
        """
        dialect = self._engine.dialect
        return [
            array_literal(item_text(column.type.item_type, self.serialize_json))
            if isinstance(column.type, sqlalchemy.ARRAY)
            else column.type.bind_processor(dialect)
            for column in columns
        ]

    def copy_rows(self, statement: sql.Composable, rows: Iterable[Sequence[t.Any]]) -> None:
        """``rows`` into the table with one COPY, committed before this returns."""
        with (
            self._connect() as connection,
            connection.begin(),
            connection.connection.driver_connection.cursor() as cursor,
            cursor.copy(statement) as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def hold_pipeline_lock(self) -> t.Any:
        """A connection of its own holding the pipeline lock shared; PipelineBusyError when a build has it."""
        connection = self._engine.raw_connection()
        try:
            hold_for_load(connection.driver_connection)
        except BaseException:
            connection.invalidate()
            raise
        return connection


class RawTableSink(PostgresSink):
    """Appends every batch to its table with one COPY: no reflection, temp table or merge per batch."""

    connector_class = RawTableConnector

    def setup(self) -> None:
        # Once per sink, that is per stream and schema (a changed SCHEMA message makes a new sink): the stock
        # target creates the table or adds the new columns; then the table's columns are known until the end.
        super().setup()
        self.connector.index_key_properties(self.full_table_name, self.key_properties)
        columns = self.column_representation(self.schema)
        self.copy_columns = [column.name for column in columns]
        self.copy_converters = self.connector.copy_converters(columns)
        _, schema_name, table_name = self.connector.parse_full_table_name(self.full_table_name)
        table = sql.Identifier(schema_name, table_name) if schema_name else sql.Identifier(table_name)
        self.copy_statement = sql.SQL("copy {} ({}) from stdin").format(
            table, sql.SQL(", ").join(map(sql.Identifier, self.copy_columns))
        )

    def process_batch(self, context: dict[str, t.Any]) -> None:
        # Plain append: several copies of a key are all kept (dbt's fct_readings keeps the latest extraction).
        self.connector.copy_rows(self.copy_statement, self.rows_to_copy(context["records"]))

    def rows_to_copy(self, records: Iterable[dict[str, t.Any]]) -> Iterator[list[t.Any]]:
        columns = list(zip(self.copy_columns, self.copy_converters, strict=True))
        sanitize = self.connector.sanitize_null_text_characters
        for record in records:
            if sanitize:
                record = self.sanitize_null_text_characters(record)
            yield [
                record.get(name) if convert is None else convert(record.get(name))
                for name, convert in columns
            ]


class LockingReader(SingerReader):
    """Singer's line reader, calling ``before_first_message`` when the first line has arrived and
    ``on_failure`` when processing the input fails."""

    before_first_message: Callable[[], None] = staticmethod(lambda: None)
    on_failure: Callable[[], None] = staticmethod(lambda: None)

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, Callable[[dict], None]]
    ) -> Counter[str]:
        lines = iter(file_input or self.default_input)
        first = next(lines, None)
        if first is None:
            return Counter()
        try:
            self.before_first_message()
            return super().process_lines(itertools.chain((first,), lines), callbacks)  # type: ignore[arg-type]
        except BaseException:
            self.on_failure()
            raise


class TargetPostgresRaw(TargetPostgres):
    """Target for Postgres: raw tables without primary key constraints, loaded by COPY."""

    name = "target-postgres"
    default_sink_class = RawTableSink
    message_reader_class = LockingReader

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        # No connection yet: a process may build many targets, and a wrong port fails when the target is used.
        self.pipeline_lock: t.Any = None
        self.message_reader.before_first_message = self.hold_pipeline_lock
        self.message_reader.on_failure = self.release_pipeline_lock

    def hold_pipeline_lock(self) -> None:
        """Before the first message is processed: a load refused here has written nothing."""
        self.pipeline_lock = self.target_connector.hold_pipeline_lock()

    def release_pipeline_lock(self) -> None:
        if self.pipeline_lock is not None:
            self.pipeline_lock.invalidate()  # closed, never back to the pool (it is in autocommit mode)
            self.pipeline_lock = None

    def process_endofpipe(self) -> None:
        super().process_endofpipe()  # every batch written and committed, the state emitted: now the lock may go
        self.release_pipeline_lock()


def main() -> None:
    """CLI entry point: a load refused by the pipeline lock ends with one clear line and exit code 1."""
    try:
        TargetPostgresRaw.cli()
    except PipelineBusyError as exc:
        print(f"target-postgres: error: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(1)
