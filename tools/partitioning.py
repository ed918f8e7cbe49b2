"""Month partitions for the readings, as docs/scaling.md proposes, runnable on any loaded warehouse.

    python -m tools.partitioning            # marts.fct_readings_by_month from marts.fct_readings, then EXPLAIN

It builds a declaratively partitioned copy (PARTITION BY RANGE (reading_at), one partition per month) with
the index the API's queries use, so the plan of a typical API query can be compared with the plain table.
"""

from __future__ import annotations

import sys

import psycopg
from psycopg import sql

from tools.db import conninfo, pg_environment

# The API's readings query for one meter and one day (see api/queries.py).
API_QUERY = """
select obis_code, reading_at, energy_kwh, quality from {table}
where muid = %(muid)s and reading_at >= %(start)s and reading_at < %(end)s
order by reading_at, obis_code limit 500
"""


def create_month_partitions(
    conn: psycopg.Connection, source: str = "fct_readings", schema: str = "marts"
) -> int:
    """(Re)build ``<source>_by_month`` partitioned by month of reading_at; returns the number of partitions."""
    parent = sql.Identifier(schema, f"{source}_by_month")
    conn.execute(sql.SQL("drop table if exists {} cascade").format(parent))
    conn.execute(
        sql.SQL(
            "create table {parent} (like {source} including defaults) partition by range (reading_at)"
        ).format(parent=parent, source=sql.Identifier(schema, source))
    )
    months = conn.execute(
        sql.SQL("select distinct date_trunc('month', reading_at, 'UTC') as month from {} order by 1").format(
            sql.Identifier(schema, source)
        )
    ).fetchall()
    for (month,) in months:
        name = sql.Identifier(schema, f"{source}_{month:%Y_%m}")
        bound = sql.Literal(month.isoformat())
        conn.execute(
            sql.SQL(
                "create table {name} partition of {parent} "
                "for values from ({bound}::timestamptz) to ({bound}::timestamptz + interval '1 month')"
            ).format(name=name, parent=parent, bound=bound)
        )
    # The key the API filters on; on the parent, so every partition gets it.
    conn.execute(sql.SQL("create unique index on {} (muid, reading_at, obis_code)").format(parent))
    conn.execute(sql.SQL("insert into {} select * from {}").format(parent, sql.Identifier(schema, source)))
    conn.execute(sql.SQL("analyze {}").format(parent))
    return len(months)


def explain(conn: psycopg.Connection, table: str, muid: str, start: str, end: str) -> str:
    query = API_QUERY.format(table=table)
    rows = conn.execute(f"explain (costs off) {query}", {"muid": muid, "start": start, "end": end}).fetchall()
    return "\n".join(row[0] for row in rows)


def main() -> int:
    with psycopg.connect(conninfo(pg_environment()), autocommit=True) as conn:
        partitions = create_month_partitions(conn)
        muid, day = conn.execute(
            "select muid, min(reading_at)::date from marts.fct_readings group by 1 limit 1"
        ).fetchone()
        start, end = f"{day}T00:00Z", f"{day}T23:59Z"
        plain = explain(conn, "marts.fct_readings", muid, start, end)
        partitioned = explain(conn, "marts.fct_readings_by_month", muid, start, end)
        sys.stdout.write(f"{partitions} partitions\n\nplain table:\n{plain}\n\npartitioned:\n{partitioned}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
