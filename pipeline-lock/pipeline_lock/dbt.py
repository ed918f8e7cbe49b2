"""`dbt_invoker_locked`: dbt, in this process, holding the build lock while dbt writes or tests.

Meltano's dbt utility runs it (meltano.yml) with dbt's own arguments (`build --select x`). dbt closes its
connections between models, so a hook cannot hold a session lock for a whole build: this wrapper's own
connection does. dbt then runs in the same interpreter through its programmatic entry point
(`dbt.cli.main.dbtRunner`), not in a second Python process as meltano-dbt-ext's `dbt_invoker` started it:
one interpreter start and one import of dbt per call instead of two.

What meltano-dbt-ext's pass-through did that matters is kept: dbt runs in the project folder
(DBT_PROJECT_DIR) and reads DBT_PROFILES_DIR (both set by the utility's settings); its `dbt clean` / `dbt deps`
before each call was switched off already (no packages). Exit codes are dbt's: 0 success, 1 a model or test
failed, 2 dbt could not run (bad arguments, project or profile errors).
"""

from __future__ import annotations

import os
import sys

from pipeline_lock import PipelineBusyError, hold_for_build

# The commands that write models or read them as a whole; the others (debug, compile, docs …) run unlocked.
LOCKED_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot"})
APPLICATION_NAME = "exnaton dbt build"
# dbt's exit codes (dbt.cli.exceptions / dbt.utils.ExitCodes).
SUCCESS, MODEL_ERROR, UNHANDLED_ERROR = 0, 1, 2


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


def run_dbt(args: list[str]) -> int:
    """dbt `args` in this process; dbt's exit code. dbt logs its own errors; those it leaves to its CLI
    (a bad option, an unknown command) are printed here, on one line."""
    from dbt.cli.exceptions import DbtInternalException, DbtUsageException
    from dbt.cli.main import dbtRunner

    project_dir = os.environ.get("DBT_PROJECT_DIR")
    if project_dir:
        os.chdir(project_dir)  # as meltano-dbt-ext ran dbt: relative paths (target, logs) are the project's
    result = dbtRunner().invoke(args)
    if result.success:
        return SUCCESS
    if result.exception is None:
        return MODEL_ERROR  # dbt ran and reported the failing nodes
    if isinstance(result.exception, DbtUsageException | DbtInternalException | KeyboardInterrupt):
        print(f"dbt-postgres: error: {result.exception}", file=sys.stderr)  # noqa: T201
    return UNHANDLED_ERROR


def main() -> None:
    args = sys.argv[1:]
    connection = None
    if needs_lock(args):
        connection = connect()  # held, with the lock, until dbt is done
        try:
            hold_for_build(connection)
        except PipelineBusyError as exc:
            print(f"dbt-postgres: error: {exc}", file=sys.stderr)  # noqa: T201
            sys.exit(1)
    code = run_dbt(args)
    if connection is not None:
        connection.close()  # frees the lock now, not when the interpreter gets round to it
    sys.exit(code)


if __name__ == "__main__":
    main()
