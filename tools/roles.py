"""The API's least-privilege role: it may read the marts and Meltano's run history, nothing else.

    python -m tools.roles            # create/refresh role `exnaton_api`; prints its name on success

Run as the user that runs dbt (PGUSER): default privileges then cover the tables dbt creates later. The
role gets LOGIN without a password, enough for the embedded server's trust authentication; on a real
server set one (`ALTER ROLE exnaton_api PASSWORD '…'`) and give it to the API as API_PGPASSWORD.
"""

from __future__ import annotations

import sys

import psycopg
from pipeline_lock.system_db import SystemSchemaError
from psycopg import sql
from sqlalchemy.exc import SQLAlchemyError

from tools.db import MELTANO_SCHEMA, conninfo, ensure_meltano_schema, pg_environment

API_ROLE = "exnaton_api"
MARTS_SCHEMA = "marts"
# Of Meltano's system tables only the run history (GET /api/v1/pipeline/runs); never the state or the rest.
RUN_HISTORY = "runs"


def ensure_api_role(env: dict[str, str], role: str = API_ROLE, schema: str = MARTS_SCHEMA) -> None:
    ident, marts = sql.Identifier(role), sql.Identifier(schema)
    with psycopg.connect(conninfo(env), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_roles where rolname = %s", [role]).fetchone():
            conn.execute(sql.SQL("create role {} login").format(ident))
        database = sql.Identifier(conn.info.dbname)
        statements = [
            "grant connect on database {database} to {role}",
            "create schema if not exists {marts}",
            "grant usage on schema {marts} to {role}",
            "grant select on all tables in schema {marts} to {role}",
            # Tables dbt creates later (as this user) are readable too, without running this again.
            "alter default privileges in schema {marts} grant select on tables to {role}",
        ]
        for statement in statements:
            conn.execute(sql.SQL(statement).format(database=database, role=ident, marts=marts))
    grant_run_history(env, role)


def grant_run_history(env: dict[str, str], role: str = API_ROLE) -> None:
    """Read on Meltano's runs table, prepared first (as a first `meltano` command would) so that the grant
    has a table to name even before the pipeline ever ran."""
    ensure_meltano_schema(env)
    with psycopg.connect(conninfo(env), autocommit=True) as conn:
        for statement in (
            "grant usage on schema {schema} to {role}",
            "grant select on {schema}.{runs} to {role}",
        ):
            conn.execute(
                sql.SQL(statement).format(
                    schema=sql.Identifier(MELTANO_SCHEMA),
                    runs=sql.Identifier(RUN_HISTORY),
                    role=sql.Identifier(role),
                )
            )


def main() -> int:
    try:
        ensure_api_role(pg_environment())
    except (psycopg.Error, SQLAlchemyError, SystemSchemaError) as exc:
        message = f"tools.roles: could not set up role {API_ROLE} ({exc}); the API will use PGUSER"
        print(message, file=sys.stderr)  # noqa: T201
        return 1
    print(API_ROLE)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
