"""The singer-sdk behaviour tap-exnaton borrows without a public hook, pinned: an SDK upgrade that changes it
fails here, loudly, instead of slowing or breaking the tap quietly."""

from __future__ import annotations

import inspect
import json
import logging

import singer_sdk.helpers._state as sdk_state
from singer_sdk.io_base import SingerWriter
from singer_sdk.singerlib import RecordMessage, SchemaMessage, StateMessage
from singer_sdk.streams._state import StreamStateManager
from source_server import export_records
from tap_exnaton.client import MeterStateManager, StateAsIsWriter
from tap_exnaton.tap import TapExnaton
from test_tap import FEB_1, IMPORT


def fleet_tap(source, count: int, state: dict | None = None) -> tuple[TapExnaton, list[str]]:
    muids = [f"meter-{index}" for index in range(count)]
    for muid in muids:
        source.files[muid] = export_records(muid, IMPORT, FEB_1, 4)
    config = {"base_url": source.base_url, "meters": [{"muid": m} for m in muids], "stream_per_meter": False}
    return TapExnaton(config=config, state=state or {}), muids


def test_every_partition_look_up_goes_through_the_meter_state_manager(source, monkeypatch, capsys):
    """MeterStateManager replaces the SDK's list scan per record by a dict; it only works as long as the SDK
    finds partition states through ``StreamStateManager.get_context_state`` and builds the manager through the
    public ``Stream.state_manager`` property."""
    tap, muids = fleet_tap(source, 3)

    def scan(*args, **kwargs):
        raise AssertionError("the SDK scanned the partition list instead of asking the state manager")

    monkeypatch.setattr(sdk_state, "_find_in_partitions_list", scan)
    tap.sync_all()

    stream = tap.streams["readings"]
    assert isinstance(stream.state_manager, MeterStateManager)
    assert set(inspect.signature(StreamStateManager.__init__).parameters) >= {
        "tap_name", "stream_name", "tap_state", "state_partitioning_keys", "is_sorted", "check_sorted",
    }  # fmt: skip
    last_state = json.loads([line for line in capsys.readouterr().out.splitlines() if '"STATE"' in line][-1])
    partitions = last_state["value"]["bookmarks"]["readings"]["partitions"]
    assert [p["context"]["muid"] for p in partitions] == muids
    assert {p["replication_key_value"] for p in partitions} == {"2023-02-01T00:45:00.000Z"}


def test_the_sdks_lines_per_partition_are_the_ones_the_tap_filters_out(source, run_tap):
    """The SDK logs "Starting incremental sync of ..." per partition through the stream's logger, and "Stream is
    assumed to be unsorted ..." per partition of an unsorted stream through the "singer_sdk" logger; the tap
    drops exactly those lines (a fleet's 10,000 of them cost more than its fetches)."""
    assert "Starting incremental sync of" in inspect.getsource(
        StreamStateManager.write_starting_replication_value
    )
    assert '"Stream is assumed to be unsorted' in inspect.getsource(sdk_state.increment_state)
    assert sdk_state.logger is logging.getLogger("singer_sdk")
    tap, _ = fleet_tap(source, 3)
    stream = tap.streams["readings"]
    assert stream.state_manager._logger is stream.logger  # the logger the filter is on
    run = run_tap(dict(tap.config))
    assert run.returncode == 0, run.stderr
    assert "Beginning sync of 'readings'" in run.stderr  # the stream's other lines still come
    assert "Starting incremental sync of" not in run.stderr
    assert "Stream is assumed to be unsorted" not in run.stderr


def test_the_state_writer_writes_the_sdks_lines_without_copying_the_state(source, capsys, monkeypatch):
    """StateAsIsWriter serializes a STATE message's value as it is; every line it writes is the line the SDK's
    own writer writes (nulls, nested lists and all), and the tap writes its messages through it."""
    state = {"bookmarks": {"readings": {"partitions": [
        {"context": {"muid": "m"}, "replication_key_value": "2023-02-01T00:45:00.000Z", "error": None},
    ]}}, "other": [1, None, {"x": None}]}  # fmt: skip
    messages = [
        StateMessage(value=state),
        RecordMessage(stream="readings", record={"muid": "m", "value": None}),
        SchemaMessage(stream="readings", schema={"type": "object"}, key_properties=["muid"]),
    ]
    for message in messages:
        assert StateAsIsWriter().format_message(message) == SingerWriter().format_message(message)

    def copied(*args, **kwargs):
        raise AssertionError("the state was turned into a dict with dataclasses.asdict (a deep copy)")

    monkeypatch.setattr(StateMessage, "to_dict", copied)
    assert '"partitions"' in StateAsIsWriter().format_message(StateMessage(value=state))
    tap, muids = fleet_tap(source, 2)
    assert isinstance(tap.message_writer, StateAsIsWriter)
    tap.sync_all()
    states = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"STATE"' in line]
    assert [p["context"]["muid"] for p in states[-1]["value"]["bookmarks"]["readings"]["partitions"]] == muids
