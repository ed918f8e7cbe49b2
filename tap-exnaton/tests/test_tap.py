"""tap-exnaton against a real local HTTP source, through its real CLI."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from source_server import Scripted, SourceServer, export_records
from tap_exnaton.client import format_source_timestamp
from tap_exnaton.streams import expand_day_record

UTC = UTC
MUID_1 = "95ce3367-cbce-4a4d-bbe3-da082831d7bd"
MUID_2 = "1db7649e-9342-4e04-97c7-f0ebb88ed1f8"
IMPORT, EXPORT = "0100011D00FF", "0100021D00FF"
FEB_1 = datetime(2023, 2, 1, tzinfo=UTC)
REAL_FILES = Path(__file__).resolve().parents[3] / "shared" / "data" / "exnaton"
METERS = [{"stream_name": "muid_1", "muid": MUID_1}, {"stream_name": "muid_2", "muid": MUID_2}]


def file_config(source, **extra) -> dict:
    return {"base_url": source.base_url, "meters": METERS, **extra}


def measurement_config(source, **extra) -> dict:
    return file_config(
        source,
        api_mode="measurement",
        start_date="2023-02-01T00:00:00Z",
        end_date="2023-02-04T00:00:00Z",
        **extra,
    )


def bookmark(state: dict, stream: str) -> dict:
    """The state of a stream's one meter: every stream is partitioned by meter."""
    (partition,) = state["bookmarks"][stream]["partitions"]
    return partition


def serve_two_meters(source, count: int = 8) -> None:
    source.files[MUID_1] = export_records(MUID_1, IMPORT, FEB_1, count)
    # Exported energy: zero (a JSON int) at night, floats with binary noise by day.
    source.files[MUID_2] = export_records(
        MUID_2, EXPORT, FEB_1, count, lambda i: 0 if i % 2 else 0.1155 * 1.5
    )


# --- file mode: the S3 export format ---------------------------------------------------------------


def test_file_mode_emits_one_long_form_record_per_obis_value(source, run_tap):
    serve_two_meters(source)
    run = run_tap(file_config(source))
    assert run.returncode == 0, run.stderr
    newest = run.records("muid_1")[-1]
    assert newest == {
        "muid": MUID_1,
        "measurement": "energy",
        "timestamp": "2023-02-01T01:45:00.000Z",
        "quality": "measured",
        "obis_code": IMPORT,
        "value": 0.07,
        "tags": {"muid": MUID_1, "quality": "measured"},
    }
    assert len(run.records("muid_1")) == len(run.records("muid_2")) == 8


def test_int_zero_and_float_noise_pass_through_unchanged(source, run_tap):
    serve_two_meters(source)
    run = run_tap(file_config(source))
    values = [r["value"] for r in run.records("muid_2")]
    assert 0 in values and all(type(v) is int for v in values if v == 0)
    assert '"value":0.17325000000000002' in run.stdout.replace(" ", "")
    assert re.search(r'"value":0[,}]', run.stdout.replace(" ", ""))


def test_file_mode_sends_ascending_and_bookmarks_the_max_timestamp_in_the_meters_partition(source, run_tap):
    serve_two_meters(source)  # the export is newest first
    run = run_tap(file_config(source))
    stamps = [r["timestamp"] for r in run.records("muid_1")]
    assert stamps == sorted(stamps)
    assert bookmark(run.final_state, "muid_1") == {
        "context": {"muid": MUID_1},
        "replication_key": "timestamp",
        "replication_key_value": "2023-02-01T01:45:00.000Z",
    }


def test_any_obis_shaped_key_is_kept_and_other_keys_ignored(source, run_tap):
    record = export_records(MUID_1, IMPORT, FEB_1, 1)[0]
    record["0100031d00ff"] = 1.5  # an unknown OBIS code, lower-case hex
    record["comment"] = "not an OBIS key"
    source.files[MUID_1] = [record]
    run = run_tap(file_config(source, meters=METERS[:1]))
    assert run.returncode == 0, run.stderr
    assert sorted((r["obis_code"], r["value"]) for r in run.records()) == [
        (IMPORT, 0.0),
        ("0100031D00FF", 1.5),
    ]


def test_file_mode_with_a_stream_level_bookmark_resumes_from_it_as_the_meters_partition(source, run_tap):
    serve_two_meters(source)
    # The state of a stream per meter before every stream was partitioned by meter.
    state = {
        "bookmarks": {
            "muid_1": {"replication_key": "timestamp", "replication_key_value": "2023-02-01T01:00:00.000Z"}
        }
    }
    run = run_tap(file_config(source), state)
    assert [r["timestamp"] for r in run.records("muid_1")] == [
        "2023-02-01T01:15:00.000Z",
        "2023-02-01T01:30:00.000Z",
        "2023-02-01T01:45:00.000Z",
    ]
    assert len(run.records("muid_2")) == 8
    assert "replication_key_value" not in run.final_state["bookmarks"]["muid_1"]  # moved, not copied
    assert bookmark(run.final_state, "muid_1")["replication_key_value"] == "2023-02-01T01:45:00.000Z"

    again = run_tap(file_config(source), run.final_state)
    assert again.records() == []
    assert bookmark(again.final_state, "muid_1")["replication_key_value"] == "2023-02-01T01:45:00.000Z"


def test_start_date_is_inclusive_and_end_date_exclusive(source, run_tap):
    serve_two_meters(source)
    run = run_tap(file_config(source, start_date="2023-02-01T00:30:00Z", end_date="2023-02-01T01:30:00Z"))
    stamps = sorted(r["timestamp"] for r in run.records("muid_1"))
    assert stamps == [f"2023-02-01T{t}:00.000Z" for t in ("00:30", "00:45", "01:00", "01:15")]


@pytest.mark.skipif(not REAL_FILES.is_dir(), reason="the real Exnaton files are not beside the project")
def test_real_export_files(run_tap, source):
    for muid in (MUID_1, MUID_2):
        source.files[muid] = json.loads((REAL_FILES / f"{muid}.json").read_bytes())["data"]
    run = run_tap(file_config(source))
    assert run.returncode == 0, run.stderr
    for stream, muid in (("muid_1", MUID_1), ("muid_2", MUID_2)):
        ascending = sorted(source.files[muid], key=lambda r: r["timestamp"])
        expected = [v for r in ascending for k, v in r.items() if k.startswith("0100")]
        records = run.records(stream)
        assert len(records) == 2688
        assert [r["value"] for r in records] == expected
        assert sum(r["value"] for r in records) == sum(expected)


# --- measurement mode: the upstream API ------------------------------------------------------------


def test_measurement_mode_walks_windows_in_order(source, run_tap):
    serve_two_meters(source, count=3 * 96)
    run = run_tap(measurement_config(source, window_days=1, meters=METERS[:1]))
    assert run.returncode == 0, run.stderr
    stamps = [r["timestamp"] for r in run.records()]
    assert len(stamps) == 3 * 96 == len(set(stamps))
    assert stamps == sorted(stamps)
    assert [(q["start"], q["stop"]) for q in source.measurement_queries()] == [
        ("2023-02-01", "2023-02-02"),
        ("2023-02-02", "2023-02-03"),
        ("2023-02-03", "2023-02-04"),
    ]
    assert source.measurement_queries()[0] == {
        "muid": MUID_1,
        "measurement": "energy",
        "start": "2023-02-01",
        "stop": "2023-02-02",
        "limit": "5000",
    }
    assert bookmark(run.final_state, "muid_1")["replication_key_value"] == "2023-02-03T23:45:00.000Z"


@pytest.mark.parametrize("keep", ["newest", "oldest"])
def test_full_windows_are_split_until_no_reading_is_lost(source, run_tap, keep):
    source.keep = keep
    serve_two_meters(source, count=3 * 96)
    run = run_tap(measurement_config(source, window_days=3, page_size=40, meters=METERS[:1]))
    assert run.returncode == 0, run.stderr
    stamps = [r["timestamp"] for r in run.records()]
    assert len(stamps) == 3 * 96 == len(set(stamps))
    assert stamps == sorted(stamps)
    assert len(source.measurement_queries()) > 3 * 96 // 40
    sub_day = [q for q in source.measurement_queries() if "T" in q["start"]]
    assert sub_day and all(q["start"].endswith("Z") for q in sub_day)


def test_window_that_stays_full_at_fifteen_minutes_is_an_error(source, run_tap):
    record = export_records(MUID_1, IMPORT, FEB_1, 1)[0]
    source.files[MUID_1] = [record, dict(record)]  # two readings in one 15-minute slot, limit 1
    run = run_tap(measurement_config(source, page_size=1, meters=METERS[:1]))
    assert run.returncode == 1
    assert "raise page_size" in run.stderr


def test_measurement_mode_resumes_at_the_bookmark(source, run_tap):
    serve_two_meters(source, count=3 * 96)
    state = {
        "bookmarks": {
            "muid_1": {"replication_key": "timestamp", "replication_key_value": "2023-02-03T12:00:00.000Z"}
        }
    }
    run = run_tap(measurement_config(source, meters=METERS[:1]), state)
    assert source.measurement_queries()[0]["start"] == "2023-02-03T12:00:00.000Z"
    stamps = [r["timestamp"] for r in run.records()]
    # The bookmark's timestamp is asked again but not sent: a bookmark is committed only once all of its
    # meter's records are (see test_a_run_stopped_inside_one_timestamp_loses_no_reading).
    assert stamps[0] == "2023-02-03T12:15:00.000Z" and len(stamps) == 47


def test_measurement_mode_needs_a_start(source, run_tap):
    run = run_tap(file_config(source, api_mode="measurement", meters=METERS[:1]))
    assert run.returncode == 1
    assert "start_date is required" in run.stderr


# --- HTTP behaviour: retries and errors ------------------------------------------------------------


def test_server_errors_are_retried_then_succeed(source, run_tap):
    serve_two_meters(source)
    path = f"/challenge/{MUID_1}.json"
    source.script[path] = [Scripted(500), Scripted(502), Scripted(503)]
    run = run_tap(file_config(source, retry_backoff_factor=0.01, meters=METERS[:1]))
    assert run.returncode == 0, run.stderr
    assert len(run.records()) == 8
    assert sum(1 for _, p, _ in source.requests if p == path) == 4


def test_429_waits_for_retry_after(source, run_tap):
    serve_two_meters(source)
    path = f"/challenge/{MUID_1}.json"
    source.script[path] = [Scripted(429, headers={"Retry-After": "1"})]
    run = run_tap(file_config(source, retry_backoff_factor=0.01, meters=METERS[:1]))
    assert run.returncode == 0, run.stderr
    (first, *_), (second, *_) = [r for r in source.requests if r[1] == path]
    assert second - first >= 1.0


def test_retries_exhausted_fail_naming_meter_and_url(source, run_tap):
    path = f"/challenge/{MUID_1}.json"
    source.script[path] = [Scripted(503)] * 3
    run = run_tap(file_config(source, retry_backoff_factor=0.01, max_retries=2, meters=METERS[:1]))
    assert run.returncode == 1
    error = run.stderr.strip().splitlines()[-1]
    assert error.startswith("tap-exnaton: error: muid_1:") and path in error and "503" in error


def test_client_error_is_not_retried(source, run_tap):
    run = run_tap(file_config(source, meters=METERS[:1]))  # nothing served: 404
    assert run.returncode == 1
    assert "HTTP 404" in run.stderr.splitlines()[-1]
    assert len(source.requests) == 1


BAD_BODIES = {
    "not JSON": (b"<html>Service unavailable</html>", "not JSON"),
    "no data": (b'{"items": []}', "no top-level 'data'"),
    "null data": (b'{"data": null}', "field 'data' is NoneType"),
    "no timestamp": (b'{"data": [{"measurement": "energy", "0100011D00FF": 1.0}]}', "'timestamp'"),
    "bad timestamp": (b'{"data": [{"timestamp": "yesterday", "0100011D00FF": 1.0}]}', "'timestamp'"),
    "text value": (
        b'{"data": [{"timestamp": "2023-02-01T00:00:00.000Z", "0100011D00FF": "1,5"}]}',
        "'0100011D00FF'",
    ),
    "bool value": (
        b'{"data": [{"timestamp": "2023-02-01T00:00:00.000Z", "0100011D00FF": true}]}',
        "not a number",
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_bad_bodies_fail_with_one_clear_line(source, run_tap, case):
    body, expected = BAD_BODIES[case]
    source.script[f"/challenge/{MUID_1}.json"] = [Scripted(200, body)]
    run = run_tap(file_config(source, meters=METERS[:1]))
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("tap-exnaton: error: muid_1: GET http://127.0.0.1")
    assert expected in last
    assert run.records() == []


def test_null_values_are_loaded_as_null(source, run_tap):
    source.files[MUID_1] = [{"timestamp": "2023-02-01T00:00:00.000Z", "tags": {"muid": MUID_1}, IMPORT: None}]
    run = run_tap(file_config(source, meters=METERS[:1]))
    assert run.returncode == 0, run.stderr
    assert run.records()[0]["value"] is None


def test_api_key_is_sent_in_the_configured_header_and_never_printed(source, run_tap):
    serve_two_meters(source)
    secret = "s3cr3t-key-value"
    run = run_tap(file_config(source, api_key=secret, auth_header="X-Api-Key", meters=METERS[:1]))
    assert run.returncode == 0
    assert source.requests[0][2]["X-Api-Key"] == secret
    assert secret not in run.stderr


def test_proxy_of_the_environment_is_used(source, run_tap):
    """The session reads the proxy variables once (not on every request), and still goes through them."""
    serve_two_meters(source)
    proxy = source.base_url.removesuffix("/challenge")
    config = file_config(source, meters=METERS[:1], base_url="http://meters.invalid/challenge")
    run = run_tap(config, env={"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""})
    assert run.returncode == 0, run.stderr
    assert len(run.records()) == 8
    # A proxy gets the absolute URL of the source in the request line.
    assert source.requests[0][1] == f"http://meters.invalid/challenge/{MUID_1}.json"


def test_a_meter_id_in_the_path_is_percent_encoded(source, run_tap):
    config = file_config(source, meters=[{"stream_name": "odd", "muid": "meter one/ü"}], max_retries=0)
    run = run_tap(config)
    assert source.requests[0][1] == "/challenge/meter%20one%2F%C3%BC.json"
    assert run.returncode != 0  # the source has no such file: one clear line, no traceback
    assert "HTTP 404" in run.stderr
    assert "Traceback" not in run.stderr


# --- settings and discovery ------------------------------------------------------------------------


def test_discover_lists_one_stream_per_meter_with_keys(source, run_tap):
    run = run_tap(file_config(source), None, "--discover")
    catalog = json.loads(run.stdout)
    streams = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert sorted(streams) == ["muid_1", "muid_2"]
    assert streams["muid_1"]["key_properties"] == ["muid", "obis_code", "timestamp"]
    assert streams["muid_1"]["replication_key"] == "timestamp"


def test_default_meters_are_the_two_exnaton_meters(source, run_tap):
    run = run_tap({"base_url": source.base_url}, None, "--discover")
    assert sorted(s["tap_stream_id"] for s in json.loads(run.stdout)["streams"]) == ["muid_1", "muid_2"]


def test_append_only_declares_no_keys(source, run_tap):
    serve_two_meters(source)
    run = run_tap(file_config(source, append_only=True))
    assert run.schema("muid_1")["key_properties"] == []


def test_duplicate_stream_names_are_rejected(source, run_tap):
    twice = [METERS[0], {**METERS[1], "stream_name": "muid_1"}]
    run = run_tap(file_config(source, meters=twice), None, "--discover")
    assert run.returncode == 1
    assert "setting 'meters': entry 2: stream_name muid_1 is already on entry 1" in run.stderr


def test_duplicate_muids_are_rejected(source, run_tap):
    twice = [METERS[0], {**METERS[0], "stream_name": "again"}]
    run = run_tap(file_config(source, meters=twice), None, "--discover")
    assert run.returncode == 1
    assert f"setting 'meters': entry 2: muid {MUID_1} is already on entry 1" in run.stderr


@pytest.mark.parametrize("muid", ["", "  "])
def test_an_empty_muid_in_setting_meters_is_rejected_as_in_a_meters_file(source, run_tap, muid):
    run = run_tap(file_config(source, meters=[METERS[0], {"stream_name": "m2", "muid": muid}]))
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == "tap-exnaton: error: setting 'meters': entry 2: the muid is empty"
    assert source.requests == []


def test_about_lists_every_setting(run_tap):
    run = run_tap({}, None, "--about", "--format", "json")
    settings = set(json.loads(run.stdout)["settings"]["properties"])
    assert {"base_url", "meters", "api_mode", "start_date", "end_date", "page_size", "api_key"} <= settings
    assert json.loads(run.stdout)["settings"]["properties"]["api_key"]["secret"] is True


# --- meter_day layout: one record per meter, OBIS code and UTC day ---------------------------------


def day_config(source, **extra) -> dict:
    return file_config(source, record_layout="meter_day", **extra)


def test_meter_day_records_hold_whole_days_in_ascending_arrays(source, run_tap):
    serve_two_meters(source, count=2 * 96 + 4)
    run = run_tap(day_config(source))
    assert run.returncode == 0, run.stderr
    days = run.records("muid_2")
    assert [d["day"] for d in days] == ["2023-02-01", "2023-02-02", "2023-02-03"]
    assert [d["reading_count"] for d in days] == [96, 96, 4]
    first = days[0]
    # A regular day carries neither timestamps (they follow from first_timestamp) nor one quality per value.
    assert first["timestamps"] is None and first["qualities"] is None and first["quality"] == "measured"
    assert first["first_timestamp"] == "2023-02-01T00:00:00.000Z"
    readings = expand_day_record(first)
    assert [stamp for stamp, _, _ in readings] == [
        f"2023-02-01T{minute // 60:02d}:{minute % 60:02d}:00.000Z" for minute in range(0, 24 * 60, 15)
    ]
    assert first["last_timestamp"] == readings[-1][0] == "2023-02-01T23:45:00.000Z"
    assert first["values"][:2] == [0.17325000000000002, 0.0]
    assert {quality for _, _, quality in readings} == {"measured"}
    assert first["tags"] is None
    assert days[2]["timestamps"] is None and len(expand_day_record(days[2])) == 4
    assert run.schema("muid_2")["key_properties"] == ["muid", "obis_code", "first_timestamp"]
    assert bookmark(run.final_state, "muid_2")["replication_key_value"] == "2023-02-03T00:45:00.000Z"


def test_meter_day_keeps_timestamps_off_the_grid_and_qualities_that_differ(source, run_tap):
    records = export_records(MUID_1, IMPORT, FEB_1, 6)[::-1]  # oldest first
    del records[2]  # a gap: 00:30 is missing
    records[3]["tags"] = {**records[3]["tags"], "quality": "estimated"}
    source.files[MUID_1] = records[::-1]
    source.files[MUID_2] = export_records(MUID_2, IMPORT, FEB_1, 3)
    source.files[MUID_2][0]["timestamp"] = "2023-02-01T00:31:00.000Z"  # off the 15-minute grid
    run = run_tap(day_config(source))
    (gap,) = run.records("muid_1")
    assert gap["timestamps"] == [
        f"2023-02-01T{hh_mm}:00.000Z" for hh_mm in ("00:00", "00:15", "00:45", "01:00", "01:15")
    ]
    assert gap["quality"] is None
    assert gap["qualities"] == ["measured", "measured", "measured", "estimated", "measured"]
    (off_grid,) = run.records("muid_2")
    assert off_grid["timestamps"] == [
        "2023-02-01T00:00:00.000Z",
        "2023-02-01T00:15:00.000Z",
        "2023-02-01T00:31:00.000Z",
    ]
    assert off_grid["qualities"] is None and off_grid["quality"] == "measured"
    assert [stamp for stamp, _, _ in expand_day_record(off_grid)] == off_grid["timestamps"]


def test_meter_day_keeps_extra_tags_per_reading(source, run_tap):
    records = export_records(MUID_1, IMPORT, FEB_1, 3)
    records[1]["tags"] = {**records[1]["tags"], "source": "estimated-by-utility"}
    source.files[MUID_1] = records
    run = run_tap(day_config(source, meters=METERS[:1]))
    (day,) = run.records()
    assert day["tags"][1]["source"] == "estimated-by-utility"
    assert len(day["tags"]) == 3


def test_meter_day_with_state_sends_only_the_readings_after_the_bookmark(source, run_tap):
    serve_two_meters(source, count=2 * 96 + 4)
    state = {"replication_key": "last_timestamp", "replication_key_value": "2023-02-03T00:15:00.000Z"}
    run = run_tap(day_config(source, meters=METERS[:1]), {"bookmarks": {"muid_1": state}})
    (day,) = run.records()
    # Part of a day: the two readings after the bookmark, not the day's four.
    assert (day["day"], day["first_timestamp"], day["reading_count"]) == (
        "2023-02-03",
        "2023-02-03T00:30:00.000Z",
        2,
    )
    assert day["timestamps"] is None and [s for s, _, _ in expand_day_record(day)] == [
        "2023-02-03T00:30:00.000Z",
        "2023-02-03T00:45:00.000Z",
    ]
    again = run_tap(day_config(source, meters=METERS[:1]), run.final_state)
    assert again.records() == []


def test_meter_day_in_measurement_mode_joins_days_split_across_windows(source, run_tap):
    serve_two_meters(source, count=3 * 96)
    config = measurement_config(
        source, record_layout="meter_day", window_days=2, page_size=30, meters=METERS[:1]
    )
    run = run_tap(config)
    assert run.returncode == 0, run.stderr
    assert any("T" in q["start"] for q in source.measurement_queries())  # windows split inside days
    days = run.records()
    assert [(d["day"], d["reading_count"]) for d in days] == [
        ("2023-02-01", 96),
        ("2023-02-02", 96),
        ("2023-02-03", 96),
    ]
    readings = [(stamp, value) for d in days for stamp, value, _ in expand_day_record(d)]
    assert len(set(readings)) == 3 * 96


@pytest.mark.skipif(not REAL_FILES.is_dir(), reason="the real Exnaton files are not beside the project")
def test_meter_day_real_files_carry_every_value(run_tap, source):
    for muid in (MUID_1, MUID_2):
        source.files[muid] = json.loads((REAL_FILES / f"{muid}.json").read_bytes())["data"]
    run = run_tap(day_config(source))
    for stream, muid in (("muid_1", MUID_1), ("muid_2", MUID_2)):
        expected = sorted(
            (r["timestamp"], float(v))
            for r in source.files[muid]
            for k, v in r.items()
            if k.startswith("0100")
        )
        days = run.records(stream)
        assert len(days) == 28
        assert [(stamp, value) for d in days for stamp, value, _ in expand_day_record(d)] == expected


def test_shards_split_the_meters_disjointly(source, run_tap):
    meters = [{"stream_name": f"m{i}", "muid": f"meter-{i}"} for i in range(12)]
    shards = []
    for index in range(3):
        run = run_tap(
            file_config(source, meters=meters, shard_count=3, shard_index=index), None, "--discover"
        )
        shards.append({s["tap_stream_id"] for s in json.loads(run.stdout)["streams"]})
    assert set().union(*shards) == {m["stream_name"] for m in meters}
    assert sum(len(shard) for shard in shards) == 12
    assert all(shards)


def test_shard_index_out_of_range_is_an_error(source, run_tap):
    run = run_tap(file_config(source, shard_count=2, shard_index=2), None, "--discover")
    assert run.returncode == 1
    assert "shard_index" in run.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("start_date", "notadate", "setting 'start_date' is 'notadate', not an ISO 8601 date or date-time"),
        ("end_date", "2023-02-30", "setting 'end_date' is '2023-02-30', not an ISO 8601 date or date-time"),
        ("end_date", "2022-12-31", "setting 'start_date' (2023-02-01) is not before 'end_date' (2022-12-31)"),
        ("base_url", "notaurl", "setting 'base_url' is 'notaurl', not an http:// or https:// URL"),
        ("base_url", "ftp://host/x", "setting 'base_url' is 'ftp://host/x', not an http:// or https:// URL"),
    ],
)
def test_a_bad_date_or_url_setting_is_one_line_before_any_request(source, run_tap, setting, value, message):
    run = run_tap({**file_config(source), "start_date": "2023-02-01", setting: value})
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == f"tap-exnaton: error: {message}"
    assert "Traceback" not in run.stderr
    assert source.requests == []


# --- fleet: one stream for many meters, a bookmark per meter ----------------------------------------


def fleet_config(source, meters, **extra) -> dict:
    return file_config(source, meters=meters, stream_per_meter=False, **extra)


def partition_bookmarks(state: dict, stream: str = "readings") -> dict[str, str]:
    partitions = state["bookmarks"][stream]["partitions"]
    return {p["context"]["muid"]: p.get("replication_key_value") for p in partitions}


@pytest.mark.parametrize("layout", ["reading", "meter_day"])
def test_fleet_stream_carries_every_meter_with_a_bookmark_each(source, run_tap, layout):
    serve_two_meters(source, count=8)

    run = run_tap(fleet_config(source, [{"muid": MUID_1}, {"muid": MUID_2}], record_layout=layout))

    assert run.returncode == 0, run.stderr
    assert [s["stream"] for s in run.messages if s["type"] == "SCHEMA"] == ["readings"]
    records = run.records("readings")
    assert {r["muid"] for r in records} == {MUID_1, MUID_2}
    readings = len(records) if layout == "reading" else sum(r["reading_count"] for r in records)
    assert readings == 16
    assert partition_bookmarks(run.final_state).keys() == {MUID_1, MUID_2}
    assert set(partition_bookmarks(run.final_state).values()) == {"2023-02-01T01:45:00.000Z"}


def test_fleet_meter_added_later_starts_at_start_date_the_others_at_their_bookmarks(source, run_tap):
    serve_two_meters(source, count=8)
    config = fleet_config(
        source, [{"muid": MUID_1}], api_mode="measurement", start_date="2023-02-01", end_date="2023-02-02"
    )
    first = run_tap(config)
    assert first.returncode == 0, first.stderr
    source.requests.clear()

    config["meters"] = [{"muid": MUID_1}, {"muid": MUID_2}]
    second = run_tap(config, first.final_state)

    assert second.returncode == 0, second.stderr
    starts = {q["muid"]: q["start"] for q in reversed(source.measurement_queries())}
    assert starts == {MUID_1: "2023-02-01T01:45:00.000Z", MUID_2: "2023-02-01"}
    # Asked from its bookmark, which is not sent again: nothing new.
    assert [r["timestamp"] for r in second.records() if r["muid"] == MUID_1] == []
    assert len([r for r in second.records() if r["muid"] == MUID_2]) == 8
    assert set(partition_bookmarks(second.final_state).values()) == {"2023-02-01T01:45:00.000Z"}


def test_fleet_failing_meter_keeps_its_bookmark_the_others_load_and_move(source, run_tap):
    serve_two_meters(source, count=8)
    third = "5b0e9c5e-1c1e-4b1e-9a41-3f7d4ad0b6f1"
    source.files[third] = export_records(third, IMPORT, FEB_1, 8)
    meters = [{"muid": MUID_1}, {"muid": MUID_2}, {"muid": third}]
    state = {"bookmarks": {"readings": {"partitions": [
        {"context": {"muid": MUID_2}, "replication_key": "timestamp",
         "replication_key_value": "2023-02-01T00:30:00.000Z"},
    ]}}}  # fmt: skip
    source.script[f"/challenge/{MUID_2}.json"] = [Scripted(503)] * 3

    run = run_tap(fleet_config(source, meters, retry_backoff_factor=0.01, max_retries=2), state)

    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("tap-exnaton: error:")]
    assert len(errors) == 1 and MUID_2 in errors[0] and "HTTP 503" in errors[0], run.stderr
    assert errors[0].endswith("(gave up after 3 attempts)")
    assert {r["muid"] for r in run.records()} == {MUID_1, third}
    assert partition_bookmarks(run.final_state) == {
        MUID_2: "2023-02-01T00:30:00.000Z",
        MUID_1: "2023-02-01T01:45:00.000Z",
        third: "2023-02-01T01:45:00.000Z",
    }


def test_a_failed_meter_has_an_error_in_its_partition_state_until_it_next_succeeds(source, run_tap):
    serve_two_meters(source, count=8)
    source.script[f"/challenge/{MUID_2}.json"] = [Scripted(503)] * 3
    config = fleet_config(
        source, [{"muid": MUID_1}, {"muid": MUID_2}], retry_backoff_factor=0.01, max_retries=2
    )

    started = format_source_timestamp(datetime.now(UTC))
    failed = run_tap(config)

    partitions = {p["context"]["muid"]: p for p in failed.final_state["bookmarks"]["readings"]["partitions"]}
    assert "error" not in partitions[MUID_1]
    error = partitions[MUID_2]["error"]
    assert "\n" not in error and MUID_2 in error and "HTTP 503" in error, error
    assert "replication_key_value" not in partitions[MUID_2]
    assert started <= partitions[MUID_2]["error_at"] <= format_source_timestamp(datetime.now(UTC))

    fixed = run_tap(config, failed.final_state)

    assert fixed.returncode == 0, fixed.stderr
    partitions = {p["context"]["muid"]: p for p in fixed.final_state["bookmarks"]["readings"]["partitions"]}
    assert "error" not in partitions[MUID_2] and "error_at" not in partitions[MUID_2]
    assert partitions[MUID_2]["replication_key_value"] == "2023-02-01T01:45:00.000Z"


def test_a_run_stopped_inside_one_timestamp_loses_no_reading(source, run_tap):
    """The SDK writes a STATE message every 10,000 records of a stream; here the 10,000th record is the first of two OBIS
    codes of one timestamp of the second meter. A run stopped right after that message must send on its next
    run every reading not sent before it (at least once), and nothing of the meter that was done."""
    source.files[MUID_1] = export_records(MUID_1, IMPORT, FEB_1, 5001)
    second = export_records(MUID_2, IMPORT, FEB_1, 3000)
    for record in second:
        record[EXPORT] = 0.5
    source.files[MUID_2] = second
    config = fleet_config(source, [{"muid": MUID_1}, {"muid": MUID_2}])  # one stream: one record count
    whole = run_tap(config)
    assert whole.returncode == 0, whole.stderr
    expected = readings_of(whole.records())
    assert len(expected) == 5001 + 2 * 3000

    records_at = [i for i, m in enumerate(whole.messages) if m["type"] == "RECORD"]
    stop = records_at[10_000 - 1] + 1
    assert whole.messages[stop]["type"] == "STATE"  # the SDK's STATE_MSG_FREQUENCY, pinned
    last_sent = whole.messages[stop - 1]["record"]
    assert (last_sent["muid"], last_sent["obis_code"]) == (MUID_2, IMPORT)  # inside one timestamp
    sent_before = readings_of([m["record"] for m in whole.messages[:stop] if m["type"] == "RECORD"])

    resumed = run_tap(config, whole.messages[stop]["value"])

    assert resumed.returncode == 0, resumed.stderr
    assert sent_before | readings_of(resumed.records()) == expected
    assert {r["muid"] for r in resumed.records()} == {MUID_2}


def readings_of(records: list[dict]) -> set[tuple[str, str, str]]:
    return {(record["muid"], record["obis_code"], record["timestamp"]) for record in records}


def test_fleet_fetches_concurrently_within_the_bound(run_tap):
    """1,000 meters behind a source that answers each request after 50 ms: one after another that is 50 s
    at the least; with the default 16 requests in flight, a few seconds (the bound is 10 s of tap wall)."""
    source = SourceServer(delay=0.05)
    try:
        muids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1000)]
        for muid in muids:
            source.files[muid] = export_records(muid, IMPORT, FEB_1, 4)
        started = time.monotonic()
        run = run_tap(fleet_config(source, [{"muid": m} for m in muids], record_layout="meter_day"))
        wall = time.monotonic() - started
    finally:
        source.close()
    assert run.returncode == 0, run.stderr
    assert len(source.requests) == 1000
    assert source.most_in_flight == 16  # the default max_concurrent_requests, never more
    # The session's connection pool has room for every request thread: none is dropped on its way back.
    assert "Connection pool is full" not in run.stderr
    records = run.records()
    assert [r["muid"] for r in records] == muids  # emitted in the configured order, each once
    assert set(partition_bookmarks(run.final_state).values()) == {"2023-02-01T00:45:00.000Z"}
    assert wall <= 10, wall


# --- meters_file ------------------------------------------------------------------------------------


def write_csv(tmp_path, text: str) -> str:
    path = tmp_path / "meters.csv"
    path.write_text(text)
    return str(path)


def test_meters_file_lists_the_meters(source, run_tap, tmp_path):
    serve_two_meters(source)
    meters_file = write_csv(tmp_path, f"muid,stream_name,site\n{MUID_1},muid_1,a\n{MUID_2},muid_2,b\n")
    config = {"base_url": source.base_url, "meters_file": meters_file}

    per_meter = run_tap(config)
    fleet = run_tap({**config, "stream_per_meter": False})

    assert per_meter.returncode == 0 and fleet.returncode == 0, per_meter.stderr + fleet.stderr
    assert {m["stream"] for m in per_meter.messages if m["type"] == "RECORD"} == {"muid_1", "muid_2"}
    assert {r["muid"] for r in fleet.records("readings")} == {MUID_1, MUID_2}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("stream_name\nmuid_1\n", "line 1: the header row has no 'muid' column"),
        (f"muid\n{MUID_1}\n \n", "line 3: the muid is empty"),
        (f"muid\n{MUID_1}\n{MUID_2}\n{MUID_1}\n", f"line 4: muid {MUID_1} is already on line 2"),
        (f"muid,stream_name\n{MUID_1},a,extra\n", "line 2: 3 fields where the header has 2"),
        (f"muid,stream_name\n{MUID_1}\n", "line 2: 1 fields where the header has 2"),
        ("muid\n", "lists no meter"),
    ],
    ids=["no muid column", "empty muid", "duplicate muid", "too many fields", "too few fields", "empty"],
)
def test_bad_meters_file_fails_before_any_request(source, run_tap, tmp_path, text, complaint):
    config = {
        "base_url": source.base_url,
        "meters_file": write_csv(tmp_path, text),
        "stream_per_meter": False,
    }
    run = run_tap(config)
    assert run.returncode == 1
    [error] = [line for line in run.stderr.splitlines() if line.startswith("tap-exnaton: error:")]
    assert complaint in error and "meters.csv" in error, error
    assert source.requests == []


def test_meters_file_needs_stream_names_for_streams_per_meter(source, run_tap, tmp_path):
    run = run_tap({"base_url": source.base_url, "meters_file": write_csv(tmp_path, f"muid\n{MUID_1}\n")})
    assert run.returncode == 1
    assert "line 2: muid" in run.stderr and "stream_per_meter: false" in run.stderr


def test_meters_and_meters_file_together_are_an_error(source, run_tap, tmp_path):
    config = file_config(source, meters_file=write_csv(tmp_path, f"muid\n{MUID_1}\n"))
    run = run_tap(config)
    assert run.returncode == 1
    assert "'meters' and 'meters_file' are both set" in run.stderr
    assert source.requests == []
