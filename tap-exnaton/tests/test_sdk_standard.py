"""The singer-sdk standard tap tests, against a real local source."""

from __future__ import annotations

from datetime import UTC, datetime

from singer_sdk.testing import get_tap_test_class
from source_server import SourceServer, export_records
from tap_exnaton.tap import DEFAULT_METERS, TapExnaton

# The standard test class is built at import time with its config, so the source must already run.
SOURCE = SourceServer()
for index, meter in enumerate(DEFAULT_METERS):
    obis = "0100011D00FF" if index == 0 else "0100021D00FF"
    SOURCE.files[meter["muid"]] = export_records(meter["muid"], obis, datetime(2023, 2, 1, tzinfo=UTC), 96)

TestTapExnaton = get_tap_test_class(
    tap_class=TapExnaton,
    config={"base_url": SOURCE.base_url, "start_date": "2023-02-01T00:00:00Z"},
)
