"""The API under hostile input, a stopped database, and least privilege."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest

from api import create_app
from tests.pipeline import REAL_METERS, conninfo
from tools.roles import API_ROLE, ensure_api_role

pytestmark = pytest.mark.e2e
MUID = REAL_METERS["muid_1"]
HOSTILE = [
    "' or 1=1 --",
    "1; drop table marts.fct_readings",
    "𝓾𝓷𝓲𝓬𝓸𝓭𝓮 ☃",
    "",
    " ",
    "9" * 400,
    "-1",
    "0001-01-01",
    "9999-12-31T23:59:59",
    "2023-02-01T00:00:00+99:00",
    "\x00",
    "%00",
    "NaN",
]
PARAMETERS = {
    "/api/v1/meters": ["muid_prefix", "page", "page_size"],
    f"/api/v1/meters/{MUID}/readings": ["start", "end", "obis", "page", "page_size", "format"],
    f"/api/v1/meters/{MUID}/energy": ["start", "end", "obis", "interval", "tz", "format"],
    f"/api/v1/meters/{MUID}/completeness": ["start", "end", "tz"],
    "/meterdata/measurement": ["muid", "measurement", "start", "stop", "end", "limit"],
}


@pytest.fixture(scope="module")
def client(warehouse):
    return create_app({"conninfo": conninfo(warehouse.pg)}).test_client()


def assert_json_error(response, status_range=range(400, 500)):
    assert response.status_code in status_range, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert body["message"] and body["code"] == response.status_code
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", list(PARAMETERS))
def test_hostile_values_in_every_parameter_are_4xx_with_a_message(client, path):
    base = {"muid": MUID, "start": "2023-02-01", "stop": "2023-02-02"} if "meterdata" in path else {}
    for parameter in PARAMETERS[path]:
        for value in HOSTILE:
            response = client.get(path, query_string={**base, parameter: value})
            if response.status_code == 200:
                # Harmless where the value is legal (e.g. an empty muid match): still JSON, still no 5xx.
                assert response.is_json or response.mimetype == "text/csv"
                continue
            assert_json_error(response)
    assert client.get(f"/api/v1/meters/{MUID}/readings?start=2023-02-01&end=2023-02-02").status_code == 200


def test_ten_year_ranges_are_bounded(client):
    fine = client.get(f"/api/v1/meters/{MUID}/energy?interval=month&start=2015-01-01&end=2025-01-01")
    assert fine.status_code == 200 and len(fine.get_json()["buckets"]) == 120
    assert_json_error(
        client.get(f"/api/v1/meters/{MUID}/energy?interval=15min&start=2015-01-01&end=2025-01-01")
    )
    assert_json_error(client.get(f"/api/v1/meters/{MUID}/completeness?start=1970-01-02&end=2099-01-01"))
    page = client.get(f"/api/v1/meters/{MUID}/readings?start=2015-01-01&end=2025-01-01&page_size=5000")
    assert page.status_code == 200 and len(page.get_json()) <= 5000


def test_statement_timeout_turns_a_slow_query_into_503(warehouse):
    app = create_app({"conninfo": conninfo(warehouse.pg), "statement_timeout_ms": 1})
    response = app.test_client().get(
        f"/api/v1/meters/{MUID}/energy?interval=hour&start=2023-02-01&end=2023-03-01"
    )
    assert_json_error(response, range(503, 504))


def test_keys_are_never_logged(warehouse, caplog):
    secret = "k-very-secret-0123456789"
    app = create_app({"conninfo": conninfo(warehouse.pg), "api_keys": [secret]})
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        assert client.get("/api/v1/meters", headers={"X-API-Key": secret[:-1] + "X"}).status_code == 401
        assert client.get("/api/v1/meters", headers={"X-API-Key": secret[:-1]}).status_code == 401
        assert client.get("/api/v1/meters", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert secret not in caplog.text
    assert secret[:-1] not in caplog.text


# --- the database stops and comes back ------------------------------------------------------------------


def private_database(server) -> dict[str, str]:
    info = server.get_postmaster_info()
    env = {
        "PGHOST": str(info.socket_dir),
        "PGPORT": str(info.port or 5432),
        "PGUSER": "postgres",
        "PGDATABASE": "postgres",
    }
    with psycopg.connect(conninfo(env), autocommit=True) as conn:
        conn.execute("create schema marts")
        conn.execute(
            "create table marts.dim_meters (muid text, stream_name text, obis_code text, direction text, "
            "first_reading_at timestamptz, last_reading_at timestamptz, reading_count bigint, last_loaded_at timestamptz)"
        )
        conn.execute(
            "insert into marts.dim_meters values ('m1', 'muid_1', '0100011D00FF', 'import', "
            "'2023-02-01Z', '2023-02-28 23:45Z', 2688, now())"
        )
    return env


def timed_get(client, url):
    began = time.monotonic()
    response = client.get(url)
    return response, time.monotonic() - began


def test_stopped_database_gives_quick_503_and_the_same_app_recovers(private_postgres):
    env = private_database(private_postgres)
    app = create_app({"conninfo": conninfo(env), "connect_timeout_s": 2})
    client = app.test_client()
    assert client.get("/ready").status_code == 200
    assert client.get("/api/v1/meters/m1").status_code == 200

    private_postgres.stop()
    for url in ("/ready", "/api/v1/meters", "/api/v1/meters/m1"):
        response, seconds = timed_get(client, url)
        assert_json_error(response, range(503, 504))
        assert seconds < 10, f"{url} took {seconds:.1f} s"
    assert client.get("/health").status_code == 200

    private_postgres.start()
    deadline = time.monotonic() + 30
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the app did not recover after the database came back"
        time.sleep(0.5)
    assert client.get("/api/v1/meters/m1").get_json()["reading_count"] == 2688


# --- least privilege ---------------------------------------------------------------------------------


def test_the_api_role_reads_the_marts_and_nothing_else(warehouse):
    ensure_api_role(warehouse.pg)
    ensure_api_role(warehouse.pg)  # idempotent
    as_api = {**warehouse.pg, "PGUSER": API_ROLE}
    app = create_app({"conninfo": conninfo(as_api)})
    client = app.test_client()
    assert client.get(f"/api/v1/meters/{MUID}/readings?start=2023-02-01&end=2023-02-02").status_code == 200
    # The bucket functions dbt creates in marts are executable by the role (PUBLIC's default).
    for query in ("energy?interval=day&tz=Asia/Kathmandu&", "completeness?"):
        response = client.get(f"/api/v1/meters/{MUID}/{query}start=2023-02-01&end=2023-02-03")
        assert response.status_code == 200, response.get_data(as_text=True)

    with psycopg.connect(conninfo(as_api), autocommit=True) as conn:
        assert conn.execute("select count(*) from marts.fct_readings").fetchone()[0] > 0
        forbidden = [
            "select count(*) from raw.muid_1",
            "select count(*) from raw.muid_2",
            "insert into marts.dim_meters (muid) values ('intruder')",
            "update marts.fct_readings set energy_kwh = 0",
            "delete from marts.fct_readings",
            "create table marts.intruder (x int)",
            "drop table marts.fct_readings",
        ]
        for statement in forbidden:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_tables_rebuilt_by_dbt_stay_readable_for_the_api_role(warehouse):
    ensure_api_role(warehouse.pg)
    warehouse.meltano("invoke", "dbt-postgres:run", "--select", "dim_meters")
    with psycopg.connect(conninfo({**warehouse.pg, "PGUSER": API_ROLE})) as conn:
        assert conn.execute("select count(*) from marts.dim_meters").fetchone()[0] > 0
