"""Pipeline faults of the network and the server: the real `meltano run` against a misbehaving local source.

Transient faults (5xx, 429, read timeouts, connections reset mid-body) are retried and the load is
complete; retries exhausted end the run non-zero, naming the meter and the URL, with Meltano's state not
advanced past what was loaded, and a re-run on a healthy source loads every reading exactly once.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import FIXTURE_METERS
from tests.faulty_source import (
    GOOD,
    bookmarks,
    error_lines,
    raw_readings,
    reset_mid_body,
    slow,
    source_readings,
    status,
)

pytestmark = pytest.mark.e2e
EL = ("run", "tap-exnaton", "target-postgres")
MUID_1, MUID_2 = (meter.muid for meter in FIXTURE_METERS)
# Longer than TAP_EXNATON_REQUEST_TIMEOUT=1 of the fault tests: the tap sees a read timeout.
TOO_SLOW = 2.5


def assert_complete(pipeline, source_dir) -> None:
    """Raw holds every reading of the source, value for value: at least once, as the loader appends what a
    re-run sends again (contract 1; fct_readings keeps one copy)."""
    for meter in FIXTURE_METERS:
        assert sorted(set(raw_readings(pipeline, meter.stream_name))) == source_readings(
            source_dir, meter.muid
        )


def test_server_errors_and_429_are_retried_until_the_data_is_complete(
    faulty_pipeline, faulty_source, tmp_path
):
    faulty_source.on(MUID_1, status(500), status(502), status(503))
    faulty_source.on(MUID_2, status(429, retry_after="2"))

    run = faulty_pipeline.meltano(*EL)

    assert_complete(faulty_pipeline, tmp_path / "source")
    assert [seen.reply for seen in faulty_source.seen(MUID_1)] == [
        "status 500",
        "status 502",
        "status 503",
        GOOD.name,
    ]
    retries = [line for line in run.stderr.splitlines() if f"/{MUID_1}.json failed (" in line]
    assert [line.split("; ")[-1].split(" in ")[0] for line in retries] == [
        "retry 1 of 3",
        "retry 2 of 3",
        "retry 3 of 3",
    ]
    assert all(f"muid_1: GET {faulty_source.base_url}/{MUID_1}.json failed (" in line for line in retries)
    refused, retried = faulty_source.seen(MUID_2)
    assert (refused.reply, retried.reply) == ("status 429", GOOD.name)
    # The backoff factor is 0.05 s: only the Retry-After header can explain a wait of 2 s.
    assert retried.at - refused.at >= 2.0


def test_read_timeouts_and_resets_mid_body_are_retried(faulty_pipeline, faulty_source, tmp_path):
    faulty_source.on(MUID_1, slow(TOO_SLOW), slow(TOO_SLOW))
    faulty_source.on(MUID_2, reset_mid_body(), reset_mid_body())
    run = faulty_pipeline.meltano(*EL)
    assert_complete(faulty_pipeline, tmp_path / "source")
    assert len(faulty_source.seen(MUID_1)) == len(faulty_source.seen(MUID_2)) == 3
    assert "ReadTimeout" in run.stderr
    assert "Connection reset" in run.stderr or "ChunkedEncodingError" in run.stderr


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        pytest.param(status(503), "failed with HTTP 503 Service Unavailable", id="503"),
        pytest.param(slow(TOO_SLOW), "failed: ReadTimeout: ", id="read timeout"),
        # Mid-body as a rule; on a busy machine the reset can beat the client to the headers.
        pytest.param(
            reset_mid_body(), "failed: (ChunkedEncodingError|ConnectionError): ", id="reset mid-body"
        ),
    ],
)
def test_retries_exhausted_fail_loudly_and_keep_the_state_honest(
    fault, cause, faulty_pipeline, faulty_source, tmp_path
):
    """File mode: one meter's file never comes; the other meter loads and is bookmarked, this one is not."""
    faulty_source.on(MUID_2, then=fault)

    failed = faulty_pipeline.meltano(*EL, check=False)

    assert failed.returncode != 0
    url = f"{faulty_source.base_url}/{MUID_2}.json"
    [message] = error_lines(failed.stderr)
    assert re.match(f"muid_2: GET {re.escape(url)} {cause}", message), message
    assert message.endswith("(gave up after 4 attempts)")
    assert len(faulty_source.seen(MUID_2)) == 1 + 3
    state = bookmarks(faulty_pipeline)
    assert state == {"muid_1": "2023-03-27T23:45:00.000Z"}
    assert_state_within_loaded(faulty_pipeline, state)

    faulty_source.heal()
    faulty_pipeline.meltano(*EL)
    assert_complete(faulty_pipeline, tmp_path / "source")
    assert bookmarks(faulty_pipeline) == {
        "muid_1": "2023-03-27T23:45:00.000Z",
        "muid_2": "2023-03-27T23:45:00.000Z",
    }


def test_measurement_mode_retries_exhausted_mid_stream(faulty_pipeline, faulty_source, tmp_path):
    """Measurement mode is sorted: the windows before the failing one may be loaded, never bookmarked past."""
    measurement = {
        "TAP_EXNATON_API_MODE": "measurement",
        "TAP_EXNATON_START_DATE": "2023-03-25",
        "TAP_EXNATON_END_DATE": "2023-03-28",
        "TAP_EXNATON_WINDOW_DAYS": "1",
    }
    third_window = f"muid={MUID_2}&measurement=energy&start=2023-03-27"
    faulty_source.on(third_window, then=slow(TOO_SLOW))

    failed = faulty_pipeline.meltano(*EL, check=False, extra_env=measurement)

    assert failed.returncode != 0
    [message] = error_lines(failed.stderr)
    assert message.startswith(f"muid_2: GET {faulty_source.base_url}/meterdata/measurement?muid={MUID_2}")
    assert "start=2023-03-27" in message and "ReadTimeout" in message
    state = bookmarks(faulty_pipeline)
    assert state.get("muid_1") == "2023-03-27T23:45:00.000Z"
    assert_state_within_loaded(faulty_pipeline, state)

    faulty_source.heal()
    faulty_pipeline.meltano(*EL, extra_env=measurement)
    assert_complete(faulty_pipeline, tmp_path / "source")


def assert_state_within_loaded(pipeline, state: dict[str, str]) -> None:
    """No bookmark is later than the newest reading of its stream that is in the raw table."""
    for stream, bookmark in state.items():
        loaded = pipeline.scalar(
            f'select to_char(max(timestamp), \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\') from raw.{stream}'
        )
        assert loaded is not None and bookmark <= loaded, (stream, bookmark, loaded)
