"""The two ways of asking Exnaton for a meter's readings, chosen once per run by the setting ``api_mode``.

A source API says which path to request, with which query parameters and paginator, and where a meter's
requests start. Everything else (parsing, the bookmark filter, records, state) is the same for both: the
stream never asks which one it has.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta

from singer_sdk.pagination import BaseAPIPaginator, SinglePagePaginator

from tap_exnaton.client import UTC, ExnatonSourceError, Window, WindowPaginator, format_query_bound

# The smallest window a full answer is split down to: one 15-minute reading interval.
MIN_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class FileExport:
    """``GET {base_url}/{muid}.json``: the S3 export, a meter's whole history in one response.

    There is no way to ask for less: a meter's run downloads the export and the stream keeps the readings
    after the meter's bookmark.
    """

    path: t.ClassVar[str] = "/{muid}.json"

    def url_params(self, context: dict, window: Window | None) -> dict[str, t.Any]:
        return {}

    def paginator(self, start: datetime | None, stop: datetime | None, *, where: str) -> BaseAPIPaginator:
        return SinglePagePaginator()

    def default_stop(self) -> datetime | None:
        return None


@dataclass(frozen=True)
class MeasurementApi:
    """``GET {base_url}/meterdata/measurement?muid=&measurement=&start=&stop=&limit=``, in windows.

    A meter's requests start at its bookmark (inclusive: the readings of the bookmark's own timestamp come
    back and are dropped with everything else at or before it), else at ``start_date``.
    """

    measurement: str
    page_size: int
    window: timedelta

    path: t.ClassVar[str] = "/meterdata/measurement"

    def url_params(self, context: dict, window: Window | None) -> dict[str, t.Any]:
        return {
            "muid": context["muid"],
            "measurement": self.measurement,
            "start": format_query_bound(window.start),
            "stop": format_query_bound(window.stop),
            "limit": self.page_size,
        }

    def paginator(self, start: datetime | None, stop: datetime | None, *, where: str) -> BaseAPIPaginator:
        if start is None:
            msg = f"{where}: start_date is required in measurement mode when there is no state"
            raise ExnatonSourceError(msg)
        return WindowPaginator(
            start, stop, window=self.window, limit=self.page_size, min_window=MIN_WINDOW, where=where
        )

    def default_stop(self) -> datetime | None:
        return datetime.now(UTC)


SourceApi = FileExport | MeasurementApi


def source_api_for(config: t.Mapping[str, t.Any]) -> SourceApi:
    """The source API the settings ask for."""
    if config.get("api_mode", "file") == "measurement":
        return MeasurementApi(
            measurement=str(config.get("measurement", "energy")),
            page_size=int(config.get("page_size", 5000)),
            window=timedelta(days=int(config.get("window_days", 31))),
        )
    return FileExport()
