"""The peer: dlt with its default settings (append) loading the same readings. Runs in benchmarks/.venv-peer.

python peer_dlt.py BASE_URL MUID [MUID ...]     (PG* from the environment)
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import dlt


def readings(base_url: str, muids: list[str]):
    for muid in muids:
        with urllib.request.urlopen(f"{base_url}/{muid}.json") as response:
            for reading in json.loads(response.read())["data"]:
                for key, value in reading.items():
                    if len(key) == 12:
                        yield {
                            "muid": muid,
                            "obis_code": key,
                            "timestamp": reading["timestamp"],
                            "quality": reading["tags"].get("quality"),
                            "value": value,
                        }


def main() -> None:
    base_url, muids = sys.argv[1], sys.argv[2:]
    # A unix-socket directory goes in the query: libpq's host parameter there wins over the URL's.
    credentials = (
        f"postgresql://{os.environ.get('PGUSER', 'postgres')}:{os.environ.get('PGPASSWORD', '')}@localhost:"
        f"{os.environ.get('PGPORT', '5432')}/{os.environ['PGDATABASE']}?host={os.environ['PGHOST']}"
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        destination=dlt.destinations.postgres(credentials=credentials),
        dataset_name="bench_dlt",
        pipelines_dir=os.environ["BENCH_DLT_DIR"],
    )
    info = pipeline.run(readings(base_url, muids), table_name="readings", write_disposition="append")
    print(json.dumps({"loads": len(info.load_packages)}))


if __name__ == "__main__":
    main()
