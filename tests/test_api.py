"""The REST API over marts loaded by the real pipeline (session fixture `warehouse`)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openapi_spec_validator import validate

from api import create_app
from tests.conftest import DST_METER, FIXTURE_METERS
from tests.pipeline import REAL_METERS, SHARED_DATA
from tools.db import conninfo

MUID_1, MUID_2 = REAL_METERS["muid_1"], REAL_METERS["muid_2"]
ZURICH = ZoneInfo("Europe/Zurich")
OBIS_KEY = re.compile(r"^[0-9A-Fa-f]{12}$")


@pytest.fixture(scope="module")
def app(warehouse):
    return create_app({"conninfo": conninfo(warehouse.pg)})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def dst_muid(warehouse) -> str:
    """A meter with readings across 2023-03-26, the spring-forward day in Europe/Zurich."""
    return DST_METER.muid if SHARED_DATA.is_dir() else FIXTURE_METERS[0].muid


def assert_error(response, status: int, parameter: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == status and body["status"] and body["message"]
    if parameter:
        assert parameter in body["message"]
        assert parameter in json.dumps(body.get("errors", {}))
    assert "Traceback" not in response.get_data(as_text=True)


# --- meters -----------------------------------------------------------------------------------------


def test_meters_lists_every_meter_with_its_channels(client, warehouse):
    response = client.get("/api/v1/meters")
    assert response.status_code == 200
    meters = {m["muid"]: m for m in response.get_json()}
    expected = {meter.muid for meter in warehouse.meters}
    assert set(meters) == expected
    meter = meters[MUID_1]
    assert meter["stream_name"] == "muid_1"
    assert [(c["obis_code"], c["direction"]) for c in meter["channels"]] == [("0100011D00FF", "import")]
    assert meter["reading_count"] == warehouse.scalar(
        "select count(*) from marts.fct_readings where muid = %s", [MUID_1]
    )
    assert meters[MUID_2]["channels"][0]["direction"] == "export"


def test_meters_are_paginated_in_muid_order(client, warehouse):
    everyone = client.get("/api/v1/meters").get_json()
    assert [m["muid"] for m in everyone] == sorted(m.muid for m in warehouse.meters)
    pages = []
    for page in (1, 2):
        response = client.get(f"/api/v1/meters?page_size=1&page={page}")
        pagination = json.loads(response.headers["X-Pagination"])
        assert (pagination["total"], pagination["total_pages"], pagination["page"]) == (
            len(everyone),
            len(everyone),
            page,
        )
        pages += response.get_json()
    assert pages == everyone[:2] and pages[0]["channels"]
    assert_error(client.get(f"/api/v1/meters?page_size=1&page={len(everyone) + 1}"), 404, "page")
    assert_error(client.get("/api/v1/meters?page_size=1001"), 422, "page_size")


def test_meters_filtered_by_muid_prefix(client):
    for prefix in ("95ce", "95CE3367-", MUID_1):
        response = client.get(f"/api/v1/meters?muid_prefix={prefix}")
        assert [m["muid"] for m in response.get_json()] == [MUID_1], prefix
        assert json.loads(response.headers["X-Pagination"])["total"] == 1
    nothing = client.get("/api/v1/meters?muid_prefix=zz%25")
    assert nothing.status_code == 200 and nothing.get_json() == []
    assert json.loads(nothing.headers["X-Pagination"])["total"] == 0
    assert_error(client.get("/api/v1/meters?muid_prefix=" + "a" * 101), 422, "muid_prefix")


def test_one_meter_and_unknown_meter(client):
    assert client.get(f"/api/v1/meters/{MUID_2}").get_json()["stream_name"] == "muid_2"
    assert_error(client.get("/api/v1/meters/does-not-exist"), 404)
    assert_error(client.get("/api/v1/meters/does-not-exist/readings"), 404)


def test_data_responses_carry_the_last_load_time(client, warehouse):
    response = client.get("/api/v1/meters")
    loaded = warehouse.scalar("select max(last_loaded_at) from marts.dim_meters")
    assert datetime.fromisoformat(response.headers["X-Data-Loaded-At"]) == loaded


# --- readings ---------------------------------------------------------------------------------------


def test_readings_are_ascending_half_open_and_exact(client, warehouse):
    response = client.get(f"/api/v1/meters/{MUID_1}/readings?start=2023-02-01&end=2023-02-02&page_size=1000")
    assert response.status_code == 200
    rows = response.get_json()
    expected = warehouse.query(
        "select reading_at, energy_kwh::float8 from marts.fct_readings where muid = %s "
        "and reading_at >= '2023-02-01Z' and reading_at < '2023-02-02Z' order by reading_at",
        [MUID_1],
    )
    assert [(datetime.fromisoformat(r["reading_at"]), r["energy_kwh"]) for r in rows] == expected
    assert len(rows) == 96 and rows[-1]["reading_at"] == "2023-02-01T23:45:00+00:00"


def test_readings_pagination_headers_and_pages(client):
    url = f"/api/v1/meters/{MUID_1}/readings?start=2023-02-01&end=2023-02-02&page_size=40"
    first = client.get(url)
    pagination = json.loads(first.headers["X-Pagination"])
    assert pagination == {
        "total": 96,
        "total_pages": 3,
        "first_page": 1,
        "last_page": 3,
        "page": 1,
        "next_page": 2,
    }
    third = client.get(url + "&page=3").get_json()
    assert len(third) == 16 and third[-1]["reading_at"].startswith("2023-02-01T23:45")
    assert_error(client.get(url + "&page=4"), 404, "page")
    assert_error(client.get(url.replace("page_size=40", "page_size=100000")), 422, "page_size")


def test_readings_filter_by_obis(client):
    rows = client.get(
        f"/api/v1/meters/{MUID_1}/readings?start=2023-02-01&end=2023-02-02&obis=0100021D00FF"
    ).get_json()
    assert rows == []
    assert_error(client.get(f"/api/v1/meters/{MUID_1}/readings?obis=not-obis"), 422, "obis")


def test_an_obis_code_matches_in_any_case_in_readings_and_energy(client):
    day = "start=2023-02-01&end=2023-02-02"
    for path in ("readings", "energy"):
        upper, lower = (
            client.get(f"/api/v1/meters/{MUID_1}/{path}?{day}&obis={code}").get_json()
            for code in ("0100011D00FF", "0100011d00ff")
        )
        assert upper and lower == upper


def test_readings_as_csv(client):
    url = f"/api/v1/meters/{MUID_1}/readings?start=2023-02-01T00:00:00Z&end=2023-02-01T01:00:00Z"
    as_json = client.get(url)
    assert as_json.mimetype == "application/json"
    for response in (client.get(url + "&format=csv"), client.get(url, headers={"Accept": "text/csv"})):
        assert response.mimetype == "text/csv"
        rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
        assert [r["reading_at"] for r in rows] == [f"2023-02-01T00:{m:02d}:00+00:00" for m in (0, 15, 30, 45)]
        assert rows == [{k: str(v) for k, v in row.items()} for row in as_json.get_json()]
        assert response.headers["X-Pagination"] == as_json.headers["X-Pagination"]


def test_readings_without_bounds_span_the_meter_and_empty_ranges_are_empty_pages(client, warehouse):
    everything = client.get(f"/api/v1/meters/{MUID_1}/readings?page_size=1")
    total = warehouse.scalar("select count(*) from marts.fct_readings where muid = %s", [MUID_1])
    assert json.loads(everything.headers["X-Pagination"])["total"] == total
    assert everything.get_json()[0]["reading_at"] == "2023-02-01T00:00:00+00:00"
    empty = client.get(f"/api/v1/meters/{MUID_1}/readings?start=2020-01-01&end=2020-01-02")
    assert empty.status_code == 200 and empty.get_json() == []
    assert_error(client.get("/api/v1/meters/not-a-meter/readings?start=2023-02-01&end=2023-02-02"), 404)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("start=yesterday", "start"),
        ("start=2023-02-30", "start"),
        ("end=1'; drop table marts.fct_readings; --", "end"),
        ("start=2023-03-01&end=2023-02-01", "end"),
        ("start=2023-02-01&end=2023-02-01", "end"),
        ("start=1800-01-01", "start"),
        ("start=99999-01-01", "start"),
        ("format=xml", "format"),
        ("page=0", "page"),
        ("page=abc", "page"),
    ],
)
def test_bad_readings_parameters_are_4xx_naming_the_parameter(client, query, parameter):
    assert_error(client.get(f"/api/v1/meters/{MUID_1}/readings?{query}"), 422, parameter)


# --- energy -----------------------------------------------------------------------------------------


def test_daily_energy_equals_the_daily_mart(client, warehouse):
    body = client.get(
        f"/api/v1/meters/{MUID_1}/energy?interval=day&start=2023-02-01&end=2023-03-01"
    ).get_json()
    assert body["tz"] == "Europe/Zurich" and body["unit"] == "kWh"
    days = {datetime.fromisoformat(b["start"]).date(): b for b in body["buckets"]}
    assert len(days) == 28
    mart = warehouse.query(
        "select day, energy_kwh::float8, reading_count from marts.fct_energy_daily "
        "where muid = %s and day >= '2023-02-01' and day < '2023-03-01' order by day",
        [MUID_1],
    )
    assert [(d, pytest.approx(e, abs=1e-9), n) for d, e, n in mart] == [
        (day, b["energy_kwh"], b["reading_count"]) for day, b in sorted(days.items())
    ]


def test_spring_forward_day_has_23_hourly_buckets(client, dst_muid):
    url = f"/api/v1/meters/{dst_muid}/energy?interval=hour&start=2023-03-26&end=2023-03-27&tz=Europe/Zurich"
    buckets = client.get(url).get_json()["buckets"]
    assert len(buckets) == 23
    assert [datetime.fromisoformat(b["start"]).hour for b in buckets] == [0, 1, *range(3, 24)]
    assert all(b["reading_count"] == 4 for b in buckets)
    day = client.get(url.replace("interval=hour", "interval=day")).get_json()["buckets"]
    assert [(b["expected_intervals"], b["reading_count"], b["completeness_pct"]) for b in day] == [
        (92, 92, 100.0)
    ]


def test_weeks_start_on_monday_and_months_follow_the_calendar(client):
    weeks = client.get(
        f"/api/v1/meters/{MUID_1}/energy?interval=week&start=2023-02-01&end=2023-03-01"
    ).get_json()
    starts = [datetime.fromisoformat(b["start"]) for b in weeks["buckets"]]
    assert all(s.weekday() == 0 and s.hour == 0 for s in starts)
    assert starts[0].date().isoformat() == "2023-01-30"
    months = client.get(
        f"/api/v1/meters/{MUID_1}/energy?interval=month&start=2023-02-01&end=2023-03-01"
    ).get_json()
    (february,) = months["buckets"]
    assert february["expected_intervals"] == 28 * 96
    total = sum(
        b["energy_kwh"]
        for b in client.get(
            f"/api/v1/meters/{MUID_1}/energy?interval=15min&start=2023-02-01&end=2023-03-01"
        ).get_json()["buckets"]
    )
    assert february["energy_kwh"] == pytest.approx(total, abs=1e-9)


def test_energy_in_another_time_zone_and_csv(client):
    url = f"/api/v1/meters/{MUID_1}/energy?interval=day&start=2023-02-02&end=2023-02-03&tz=America/New_York"
    (bucket,) = client.get(url).get_json()["buckets"]
    assert bucket["start"] == "2023-02-02T00:00:00-05:00" and bucket["reading_count"] == 96
    rows = list(csv.DictReader(io.StringIO(client.get(url + "&format=csv").get_data(as_text=True))))
    assert rows[0]["start"] == "2023-02-02T00:00:00-05:00"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("interval=minute", "interval"),
        ("tz=Mars/Olympus", "tz"),
        ("tz=", "tz"),
        ("interval=15min&start=1970-01-01&end=2099-12-31", "interval"),
        ("start=2023-02-02&end=2023-02-01", "end"),
    ],
)
def test_bad_energy_parameters_are_4xx(client, query, parameter):
    assert_error(client.get(f"/api/v1/meters/{MUID_1}/energy?{query}"), 422, parameter)


# --- the marts, the API and an independent computation agree (both DST switches, odd offsets) --------


def source_readings(warehouse, muid: str) -> dict[tuple[str, datetime], Decimal]:
    """(OBIS code, UTC instant) -> exact value, from the export file the pipeline loaded."""
    path = warehouse.workdir / "source" / f"{muid}.json"
    readings = {}
    for record in json.loads(path.read_bytes(), parse_float=Decimal)["data"]:
        moment = datetime.fromisoformat(record["timestamp"])
        for key, value in record.items():
            if OBIS_KEY.match(key):
                readings[(key.upper(), moment)] = Decimal(value)
    return readings


def local_bucket(moment: datetime, interval: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the local bucket holding ``moment``, computed with zoneinfo (not the SQL under test)."""
    local = moment.astimezone(zone)
    if interval in ("15min", "hour"):
        minutes = local.minute - local.minute % 15 if interval == "15min" else 0
        start = local.replace(minute=minutes, second=0, microsecond=0)  # keeps `fold` of a repeated hour
        length = timedelta(minutes=15) if interval == "15min" else timedelta(hours=1)
        return start, (start.astimezone(UTC) + length).astimezone(zone)
    day = local.date()
    first = {"day": day, "week": day - timedelta(days=day.weekday()), "month": day.replace(day=1)}[interval]
    after = {
        "day": first + timedelta(days=1),
        "week": first + timedelta(weeks=1),
        "month": (first + timedelta(days=32)).replace(day=1),
    }[interval]
    return (datetime.combine(first, time.min, zone), datetime.combine(after, time.min, zone))


def expected_buckets(readings: dict, interval: str, zone: ZoneInfo) -> dict[tuple, tuple]:
    """(OBIS code, ISO start) -> (ISO end, kWh, readings, 15-minute intervals of the bucket)."""
    sums: dict[tuple, list] = {}
    for (obis, moment), value in readings.items():
        start, end = local_bucket(moment, interval, zone)
        intervals = round((end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(minutes=15))
        entry = sums.setdefault((obis, start.isoformat()), [end.isoformat(), Decimal(0), 0, intervals])
        entry[1] += value
        entry[2] += 1
    return {key: (end, float(kwh), count, intervals) for key, (end, kwh, count, intervals) in sums.items()}


DST_RANGES = [("2023-03-25", "2023-03-28"), ("2023-10-28", "2023-10-31")]


@pytest.mark.parametrize(("first", "last"), DST_RANGES, ids=["spring-forward", "fall-back"])
@pytest.mark.parametrize(
    ("tz", "interval", "table"),
    [
        ("Europe/Zurich", "day", "fct_energy_daily"),
        ("Europe/Zurich", "week", "fct_energy_daily"),
        ("Europe/Zurich", "month", "fct_energy_daily"),
        ("Europe/Zurich", "hour", "fct_energy_hourly"),
        ("Europe/Zurich", "15min", "fct_readings"),
        ("America/New_York", "day", "fct_energy_hourly"),
        ("Asia/Kathmandu", "day", "fct_readings"),
        ("Asia/Kathmandu", "hour", "fct_readings"),
        ("Asia/Kolkata", "week", "fct_readings"),
    ],
)
def test_energy_buckets_equal_a_computation_from_the_source_file(
    client, app, warehouse, tz, interval, table, first, last
):
    """Every bucket overlapping the range is whole: its sums cover all readings of the bucket."""
    zone = ZoneInfo(tz)
    url = f"/api/v1/meters/{DST_METER.muid}/energy?interval={interval}&start={first}&end={last}&tz={tz}"
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    buckets = response.get_json()["buckets"]
    start, end = (datetime.combine(date.fromisoformat(d), time.min, zone) for d in (first, last))
    expected = {
        key: value
        for key, value in expected_buckets(source_readings(warehouse, DST_METER.muid), interval, zone).items()
        if datetime.fromisoformat(key[1]) < end and datetime.fromisoformat(value[0]) > start
    }
    assert expected, "the fixture has readings in the range"
    got = {
        (b["obis_code"], b["start"]): (b["end"], b["energy_kwh"], b["reading_count"], b["expected_intervals"])
        for b in buckets
    }
    assert set(expected) <= set(got)
    for key, (bucket_end, kwh, count, intervals) in expected.items():
        assert got[key] == (bucket_end, pytest.approx(kwh, abs=1e-9), count, intervals), key
    assert all(b["reading_count"] == 0 for b in buckets if (b["obis_code"], b["start"]) not in expected)
    # Consecutive buckets, each ending where the next begins, first and last overlapping the range.
    starts = [datetime.fromisoformat(b["start"]) for b in buckets]
    assert [b["end"] for b in buckets[:-1]] == [b["start"] for b in buckets[1:]]
    assert starts[0] <= start < datetime.fromisoformat(buckets[0]["end"]) and starts[-1] < end
    # The table that answered: the marts wherever they can.
    queries = app.extensions["exnaton"]["queries"]
    _, source = queries.energy_buckets_json(DST_METER.muid, interval, start, end, tz)
    assert source == table


@pytest.mark.parametrize(
    ("interval", "first", "last"),
    [
        ("month", "1970-01-01", "2100-01-01"),
        ("week", "1970-01-01", "1970-01-02"),
        ("week", "2099-12-31", "2100-01-01"),
        ("day", "2099-12-31", "2100-01-01"),
    ],
)
def test_the_calendar_frames_every_bucket_the_api_accepts(client, app, interval, first, last):
    """Days, weeks and months in the marts' zone are framed by dim_local_days: it spans the API's whole range
    (1970 to 2100), each bucket's bounds and intervals as zoneinfo counts them."""
    start, end = (datetime.combine(date.fromisoformat(d), time.min, ZURICH) for d in (first, last))
    expected, bucket = [], local_bucket(start, interval, ZURICH)
    while bucket[0] < end:
        length = bucket[1].astimezone(UTC) - bucket[0].astimezone(UTC)
        expected.append((bucket[0].isoformat(), bucket[1].isoformat(), length // timedelta(minutes=15)))
        bucket = local_bucket(bucket[1], interval, ZURICH)
    response = client.get(f"/api/v1/meters/{MUID_1}/energy?interval={interval}&start={first}&end={last}")
    assert response.status_code == 200, response.get_data(as_text=True)
    per_code: dict[str, list] = {}
    for b in response.get_json()["buckets"]:
        per_code.setdefault(b["obis_code"], []).append((b["start"], b["end"], b["expected_intervals"]))
    assert per_code
    for buckets in per_code.values():
        assert buckets == expected
    _, source = app.extensions["exnaton"]["queries"].energy_buckets_json(
        MUID_1, interval, start, end, "Europe/Zurich"
    )
    assert source == "fct_energy_daily"


def test_fall_back_day_has_25_hourly_buckets_equal_to_the_hourly_mart(client, warehouse):
    url = f"/api/v1/meters/{DST_METER.muid}/energy?interval=hour&start=2023-10-29&end=2023-10-30"
    buckets = client.get(url).get_json()["buckets"]
    assert len(buckets) == 25
    assert [b["start"][11:] for b in buckets[2:4]] == ["02:00:00+02:00", "02:00:00+01:00"]
    mart = warehouse.query(
        "select hour_start, energy_kwh::float8, reading_count from marts.fct_energy_hourly"
        " where muid = %s and hour_start >= '2023-10-28T22:00Z' and hour_start < '2023-10-29T23:00Z'"
        " order by hour_start",
        [DST_METER.muid],
    )
    assert [(datetime.fromisoformat(b["start"]), b["energy_kwh"], b["reading_count"]) for b in buckets] == [
        (start, pytest.approx(kwh, abs=1e-9), count) for start, kwh, count in mart
    ]
    (day,) = client.get(url.replace("interval=hour", "interval=day")).get_json()["buckets"]
    assert (day["expected_intervals"], day["reading_count"], day["completeness_pct"]) == (100, 100, 100.0)


def test_weekly_energy_is_the_sum_of_the_daily_mart(client, warehouse):
    body = client.get(
        f"/api/v1/meters/{MUID_1}/energy?interval=week&start=2023-02-06&end=2023-02-27&tz=Europe/Zurich"
    ).get_json()
    mart = warehouse.query(
        "select date_trunc('week', day)::date, sum(energy_kwh)::float8, sum(reading_count)::int"
        " from marts.fct_energy_daily where muid = %s and day >= '2023-02-06' and day < '2023-02-27'"
        " group by 1 order by 1",
        [MUID_1],
    )
    assert [
        (date.fromisoformat(b["start"][:10]), b["energy_kwh"], b["reading_count"]) for b in body["buckets"]
    ] == [(week, pytest.approx(kwh, abs=1e-9), count) for week, kwh, count in mart]


def test_completeness_equals_the_completeness_mart_across_both_dst_switches(client, warehouse):
    for first, last in DST_RANGES:
        days = client.get(
            f"/api/v1/meters/{DST_METER.muid}/completeness?start={first}&end={last}&tz=Europe/Zurich"
        ).get_json()["days"]
        mart = warehouse.query(
            "select obis_code, day, expected_intervals, received_intervals, missing_intervals,"
            " completeness_pct::float8 from marts.fct_meter_completeness_daily"
            " where muid = %s and day >= %s and day < %s order by day, obis_code",
            [DST_METER.muid, first, last],
        )
        assert [tuple(d.values()) for d in days] == [(o, d.isoformat(), *rest) for o, d, *rest in mart]
        assert {d["expected_intervals"] for d in days} == {96, 92 if first.startswith("2023-03") else 100}


@pytest.mark.parametrize("tz", ["Europe/Zurich", "Asia/Kathmandu"])
def test_completeness_equals_a_computation_from_the_source_file(client, warehouse, tz):
    zone = ZoneInfo(tz)
    readings = source_readings(warehouse, DST_METER.muid)
    for first, last in DST_RANGES:
        days = client.get(
            f"/api/v1/meters/{DST_METER.muid}/completeness?start={first}&end={last}&tz={tz}"
        ).get_json()["days"]
        expected = []
        for day in (date.fromisoformat(first) + timedelta(days=n) for n in range(3)):
            start, end = local_bucket(datetime.combine(day, time(12), zone), "day", zone)
            slots = round((end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(minutes=15))
            received = sum(1 for _, moment in readings if moment.astimezone(zone).date() == day)
            percent = float((Decimal(100) * received / slots).quantize(Decimal("0.01")))
            expected.append(
                (DST_METER.obis_code, day.isoformat(), slots, received, slots - received, percent)
            )
        assert [tuple(d.values()) for d in days] == expected


def test_completeness_per_local_day(client, dst_muid):
    body = client.get(f"/api/v1/meters/{dst_muid}/completeness?start=2023-03-26&end=2023-03-27").get_json()
    (day,) = body["days"]
    assert day == {
        "obis_code": day["obis_code"],
        "day": "2023-03-26",
        "expected_intervals": 92,
        "received_intervals": 92,
        "missing_intervals": 0,
        "completeness_pct": 100.0,
    }
    first = client.get(f"/api/v1/meters/{MUID_1}/completeness?start=2023-02-01&end=2023-02-02").get_json()[
        "days"
    ][0]
    # The data starts at 00:00 UTC, which is 01:00 in Zurich: the first local day misses 4 intervals.
    assert (first["received_intervals"], first["missing_intervals"]) == (92, 4)


# --- the upstream-compatible endpoint ---------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
def test_measurement_endpoint_equals_the_real_source_files(client, real_files, prefix):
    for muid in (MUID_1, MUID_2):
        url = f"{prefix}/meterdata/measurement?muid={muid}&measurement=energy&limit=5000&start=2023-02-01&stop=2023-03-01"
        response = client.get(url)
        assert response.status_code == 200
        assert response.get_json() == json.loads((real_files / f"{muid}.json").read_bytes())


def test_measurement_endpoint_shape_limit_and_end_alias(client):
    url = f"/meterdata/measurement?muid={MUID_2}&measurement=energy&start=2023-02-01&end=2023-03-01&limit=3"
    data = client.get(url).get_json()["data"]
    assert [r["timestamp"] for r in data] == [f"2023-02-28T23:{m}:00.000Z" for m in ("45", "30", "15")]
    assert set(data[0]) == {"measurement", "timestamp", "tags", "0100021D00FF"}
    assert data[0]["tags"] == {"muid": MUID_2, "quality": "measured"}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        (f"muid={MUID_1}&start=2023-02-01", "stop"),
        ("start=2023-02-01&stop=2023-03-01", "muid"),
        (f"muid={MUID_1}&start=2023-02-01&stop=2023-03-01&limit=0", "limit"),
        (f"muid={MUID_1}&start=2023-02-01&stop=2023-03-01&limit=99999999", "limit"),
        (f"muid={MUID_1}&start=2023-03-01&stop=2023-02-01", "stop"),
    ],
)
def test_bad_measurement_parameters(client, query, parameter):
    assert_error(client.get(f"/meterdata/measurement?{query}"), 422, parameter)


# --- health, docs, errors ---------------------------------------------------------------------------


def test_health_and_ready(client, warehouse):
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready").get_json()
    assert ready["status"] == "ready"
    assert datetime.fromisoformat(ready["last_loaded_at"]) == warehouse.scalar(
        "select max(last_loaded_at) from marts.dim_meters"
    )


def test_openapi_document_is_valid_and_complete(client):
    spec = client.get("/openapi.json").get_json()
    validate(spec)
    paths = spec["paths"]
    for path in (
        "/api/v1/meters",
        "/api/v1/meters/{muid}",
        "/api/v1/meters/{muid}/readings",
        "/api/v1/meters/{muid}/energy",
        "/api/v1/meters/{muid}/completeness",
        "/meterdata/measurement",
        "/api/v1/meterdata/measurement",
        "/health",
        "/ready",
    ):
        operation = paths[path]["get"]
        assert operation.get("summary") or operation.get("description"), path
        assert "200" in operation["responses"], path
    energy_parameters = {p["name"] for p in paths["/api/v1/meters/{muid}/energy"]["get"]["parameters"]}
    assert {"interval", "start", "end", "tz", "obis", "format"} <= energy_parameters
    meters_parameters = {p["name"] for p in paths["/api/v1/meters"]["get"]["parameters"]}
    assert {"page", "page_size", "muid_prefix"} <= meters_parameters
    for path in ("readings", "energy", "completeness"):
        content = paths[f"/api/v1/meters/{{muid}}/{path}"]["get"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/csv"}, path
    assert "security" not in spec  # no keys configured: nothing to authorize
    assert not [path for path, item in paths.items() if "401" in item.get("get", {}).get("responses", {})]


def untyped(schema: dict, spec: dict) -> bool:
    """A schema a generated client could only type `Any`: no type, no $ref, no typed alternatives."""
    if "$ref" in schema or "type" in schema:
        return False
    alternatives = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    return not alternatives or any(untyped(alternative, spec) for alternative in alternatives)


def test_openapi_types_every_parameter_and_every_property(client):
    spec = client.get("/openapi.json").get_json()
    parameters = [
        (path, parameter)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
        for parameter in operation.get("parameters", [])
    ]
    assert not [(path, p["name"]) for path, p in parameters if untyped(p.get("schema", {}), spec)]
    properties = [
        (name, prop, schema)
        for name, component in spec["components"]["schemas"].items()
        for prop, schema in component.get("properties", {}).items()
    ]
    assert len(properties) > 40
    assert not [(name, prop) for name, prop, schema in properties if untyped(schema, spec)]
    # Bounds and instants carry their format: a date or a date-time, not a bare string.
    moments = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}
    energy = {
        p["name"]: p["schema"] for p in spec["paths"]["/api/v1/meters/{muid}/energy"]["get"]["parameters"]
    }
    assert {energy["start"]["anyOf"] == moments["anyOf"], energy["end"]["anyOf"] == moments["anyOf"]} == {
        True
    }
    schemas = spec["components"]["schemas"]
    for name, prop, kind in [
        ("Bucket", "start", "date-time"),
        ("Bucket", "end", "date-time"),
        ("Energy", "start", "date-time"),
        ("CompletenessDay", "day", "date"),
        ("Reading", "reading_at", "date-time"),
        ("Meter", "last_loaded_at", "date-time"),
    ]:
        assert (schemas[name]["properties"][prop]["type"], schemas[name]["properties"][prop]["format"]) == (
            "string",
            kind,
        ), (name, prop)


def test_openapi_declares_the_key_when_keys_are_used(warehouse):
    app = create_app({"conninfo": conninfo(warehouse.pg), "api_keys": ["k-123"]})
    client = app.test_client()
    spec = client.get("/openapi.json").get_json()
    validate(spec)
    assert spec["security"] == [{"bearer": []}, {"apiKey": []}]
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    for path in ("/health", "/ready"):
        assert spec["paths"][path]["get"]["security"] == [], path
        assert client.get(path).status_code == 200
    data_operations = [
        op
        for path, item in spec["paths"].items()
        if path not in ("/health", "/ready")
        for method, op in item.items()
        if method != "parameters"
    ]
    assert data_operations and all("security" not in op for op in data_operations)  # the document's default
    for op in data_operations:
        unauthorized = op["responses"]["401"]
        assert unauthorized["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ApiError"
        }
        assert "WWW-Authenticate" in unauthorized["headers"]
    for path in ("/health", "/ready"):
        assert "401" not in spec["paths"][path]["get"]["responses"], path


def test_swagger_ui_is_served_with_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "cdn" not in html.lower()
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"/docs-assets/{asset}" in html
        response = client.get(f"/docs-assets/{asset}")
        assert response.status_code == 200 and len(response.data) > 10_000


def test_unreachable_database_gives_503_json_quickly():
    app = create_app(
        {"conninfo": "host=127.0.0.1 port=9 dbname=nothing connect_timeout=1", "connect_timeout_s": 1}
    )
    client = app.test_client()
    assert client.get("/health").status_code == 200
    for url in ("/ready", f"/api/v1/meters/{MUID_1}", "/api/v1/meters"):
        assert_error(client.get(url), 503)


def test_cors_for_configured_origins(warehouse):
    app = create_app({"conninfo": conninfo(warehouse.pg), "cors_origins": ["https://charts.example"]})
    client = app.test_client()
    allowed = client.get("/api/v1/meters", headers={"Origin": "https://charts.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://charts.example"
    other = client.get("/api/v1/meters", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_api_keys_protect_data_endpoints_only(warehouse):
    app = create_app({"conninfo": conninfo(warehouse.pg), "api_keys": ["k-123", "k-456"]})
    client = app.test_client()
    assert_error(client.get("/api/v1/meters"), 401)
    assert_error(client.get("/api/v1/meters", headers={"X-API-Key": "wrong"}), 401)
    assert client.get("/api/v1/meters", headers={"X-API-Key": "k-456"}).status_code == 200
    assert client.get("/api/v1/meters", headers={"Authorization": "Bearer k-123"}).status_code == 200
    assert_error(client.get(f"/meterdata/measurement?muid={MUID_1}&start=2023-02-01&stop=2023-02-02"), 401)
    for open_path in ("/health", "/docs", "/openapi.json"):
        assert client.get(open_path).status_code == 200


def test_zoned_bounds_are_read_in_the_requested_zone(client):
    body = client.get(
        f"/api/v1/meters/{MUID_1}/energy?interval=day&start=2023-02-10&end=2023-02-11&tz=Europe/Zurich"
    ).get_json()
    start = datetime.fromisoformat(body["start"])
    assert start.utcoffset().total_seconds() == 3600 and start.astimezone(ZURICH).hour == 0
