"""`dbt_invoker_locked`: meltano-dbt-ext's `dbt_invoker`, holding the build lock while dbt writes or tests.

Meltano's dbt utility runs it instead of `dbt_invoker` (meltano.yml). dbt closes its connections between
models, so a hook cannot hold a session lock for a whole build: this wrapper's own connection does.
"""

from __future__ import annotations

import os
import sys

from pipeline_lock import PipelineBusyError, hold_for_build

# The commands that write models or read them as a whole; the others (debug, compile, docs …) run unlocked.
LOCKED_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot"})
APPLICATION_NAME = "exnaton dbt build"


def needs_lock(args: list[str]) -> bool:
    # Any argument, not only the first: options may come before the command. Locking too often only waits.
    return not LOCKED_COMMANDS.isdisjoint(args)


def connect():  # psycopg2 ships no type hints
    """A connection to dbt's database: the PG* variables, with transform/profiles.yml's defaults."""
    import psycopg2  # dbt-postgres's driver, in the utility's virtualenv

    return psycopg2.connect(
        "",
        user=os.environ.get("PGUSER", "postgres"),
        port=os.environ.get("PGPORT", "5432"),
        application_name=APPLICATION_NAME,
        connect_timeout=10,
    )


def main() -> None:
    args = sys.argv[1:]
    if needs_lock(args):
        connection = connect()  # held, with the lock, until this process ends
        try:
            hold_for_build(connection)
        except PipelineBusyError as exc:
            print(f"dbt-postgres: error: {exc}", file=sys.stderr)  # noqa: T201
            sys.exit(1)
    from dbt_ext.pass_through import pass_through_cli

    pass_through_cli()


if __name__ == "__main__":
    main()
