"""The physical limit: fetch every export over HTTP, parse it, COPY the readings into PostgreSQL.

python -m benchmarks.physical BASE_URL MUID [MUID ...]     (PG* from the environment)
"""

from __future__ import annotations

import json
import sys
import urllib.request
from datetime import datetime

import psycopg

from tools.db import conninfo, pg_environment


def main() -> None:
    base_url, muids = sys.argv[1], sys.argv[2:]
    with psycopg.connect(conninfo(pg_environment())) as conn:
        conn.execute("drop table if exists bench_physical")
        conn.execute(
            "create unlogged table bench_physical (muid text, obis_code text, reading_at timestamptz, value float8)"
        )
        rows = 0
        with conn.cursor().copy("copy bench_physical from stdin") as copy:
            for muid in muids:
                with urllib.request.urlopen(f"{base_url}/{muid}.json") as response:
                    data = json.loads(response.read())["data"]
                for reading in data:
                    moment = datetime.fromisoformat(reading["timestamp"])
                    for key, value in reading.items():
                        if len(key) == 12:
                            copy.write_row((muid, key, moment, value))
                            rows += 1
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
