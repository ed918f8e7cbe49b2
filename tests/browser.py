"""A real headless Chromium and a real HTTP server for the dashboard's tests and benchmark.

The browser: Debian's `chromium` + `chromium-driver` when installed (`.ci/run` installs them), else whatever
selenium's own manager finds or fetches. No browser is a loud error, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from werkzeug.serving import make_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from flask import Flask
    from selenium.webdriver.remote.webdriver import WebDriver

INSTALL_HINT = (
    "Install a browser: `apt-get install -y chromium chromium-driver` (Debian/Ubuntu, offline-capable), or "
    "let selenium's manager download Chrome (needs internet)."
)
# Chromium's own traffic (updates, sync, field trials) has nothing to do with the page: switched off.
QUIET_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
)


class NoBrowser(RuntimeError):
    pass


def chrome(width: int = 1280, height: int = 1000) -> WebDriver:
    """Headless Chromium that records the console and every network request of its pages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (*QUIET_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    driver = shutil.which("chromedriver")
    try:
        return webdriver.Chrome(options=options, service=Service(driver) if driver else Service())
    except Exception as exc:
        raise NoBrowser(f"No headless Chromium could be started: {exc}\n{INSTALL_HINT}") from exc


@contextlib.contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """The app on a free port of 127.0.0.1 (threaded werkzeug); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the browser asked for since the last call (the performance log drains on reading)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def foreign(urls: list[str]) -> list[str]:
    """The URLs that would leave 127.0.0.1 (data: and blob: URLs stay in the page)."""
    return [
        url
        for url in urls
        if urlparse(url).scheme not in ("data", "blob") and urlparse(url).hostname != "127.0.0.1"
    ]


def console_errors(driver: WebDriver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
