"""The dashboard (`GET /`) in a real headless Chromium, against the real API over the loaded warehouse.

`UPDATE_SCREENSHOT=1` also writes docs/dashboard.png (the README shows it).
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from api import create_app
from tests.browser import NoBrowser, chrome, console_errors, foreign, live_server, requested_urls
from tests.conftest import DST_METER, FIXTURE_METERS
from tests.pipeline import PROJECT_ROOT, REAL_METERS, SHARED_DATA
from tools.db import conninfo

pytestmark = pytest.mark.e2e
MUID_1 = REAL_METERS["muid_1"]
SCREENSHOT = PROJECT_ROOT / "docs" / "dashboard.png"
WAIT_S = 30


@pytest.fixture(scope="module")
def browser():
    try:
        driver = chrome()
    except NoBrowser as exc:
        pytest.fail(str(exc), pytrace=False)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(warehouse):
    with live_server(create_app({"conninfo": conninfo(warehouse.pg)})) as base:
        yield base


@pytest.fixture(scope="module")
def dst_muid(warehouse) -> str:
    return DST_METER.muid if SHARED_DATA.is_dir() else FIXTURE_METERS[0].muid


@pytest.fixture
def page(browser):
    """The browser with its logs drained, so a test sees only what its own page did."""
    requested_urls(browser)
    browser.get_log("browser")
    return browser


def api_json(base: str, path: str, headers: dict | None = None):
    request = urllib.request.Request(base + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_ready(driver, muid: str | None = None) -> None:
    def ready(d):
        state = d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
        assert state != "error", d.find_element(By.ID, "alert").text
        drawn = muid is None or d.find_element(By.ID, "meter").get_attribute("data-muid") == muid
        return state == "ready" and drawn

    WebDriverWait(driver, WAIT_S).until(ready)


def open_meter(driver, base: str, muid: str) -> None:
    """A fresh load of the page showing this meter (from another page: a changed #fragment alone would
    not reload it)."""
    driver.get("about:blank")
    driver.get(f"{base}/#{muid}")
    wait_ready(driver, muid)


def set_inputs(driver, values: dict[str, str]) -> None:
    """Set controls as a person would (value, then `change`), then wait for the redraw."""
    for element_id, value in values.items():
        driver.execute_script(
            "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
            "e.dispatchEvent(new Event('change', {bubbles: true}));",
            element_id,
            value,
        )
    wait_ready(driver)


def bars(driver, view: str) -> dict[str, list[dict]]:
    """The drawn bars of a view per OBIS code: label, value and height in pixels."""
    return driver.execute_script(
        """
        const result = {};
        for (const figure of document.querySelectorAll(`#${arguments[0]} figure`)) {
          result[figure.dataset.obis] = [...figure.querySelectorAll("rect.bar")].map((bar) => ({
            label: bar.dataset.label, value: Number(bar.dataset.value), height: Number(bar.getAttribute("height")),
          }));
        }
        return result;
        """,
        view,
    )


def assert_heights_follow_values(drawn: list[dict]) -> None:
    top = max(drawn, key=lambda bar: bar["value"])
    scale = top["height"] / top["value"]
    for bar in drawn:
        assert bar["height"] == pytest.approx(bar["value"] * scale, abs=0.02), bar


def test_page_loads_offline_with_no_console_error_and_draws_the_first_meter(page, site, warehouse):
    page.get(site + "/")
    wait_ready(page)
    assert page.title == "Exnaton energy dashboard"
    first = api_json(site, "/api/v1/meters?page_size=1")[0]
    assert page.find_element(By.ID, "meter").get_attribute("data-muid") == first["muid"]
    assert bars(page, "daily")[first["channels"][0]["obis_code"]]
    assert "Energy per day (kWh)" in page.find_element(By.CSS_SELECTOR, "#daily svg").text
    loaded = page.find_element(By.ID, "freshness").get_attribute("data-loaded-at")
    assert loaded and page.find_element(By.ID, "freshness").text.startswith("Data loaded at")
    urls = requested_urls(page)
    assert any("/api/v1/meters/" in url for url in urls)
    assert foreign(urls) == []
    assert console_errors(page) == []


def test_daily_bars_equal_the_api_buckets_across_the_dst_switch(page, site, dst_muid):
    open_meter(page, site, dst_muid)
    set_inputs(page, {"range-start": "2023-03-25", "range-end": "2023-03-27"})
    buckets = api_json(
        site,
        f"/api/v1/meters/{dst_muid}/energy?interval=day&start=2023-03-25&end=2023-03-28&tz=Europe/Zurich",
    )["buckets"]
    drawn = bars(page, "daily")
    for obis_code, channel_bars in drawn.items():
        expected = [b for b in buckets if b["obis_code"] == obis_code]
        assert [(bar["label"], bar["value"]) for bar in channel_bars] == [
            (b["start"][5:10], b["energy_kwh"]) for b in expected
        ]
        assert_heights_follow_values(channel_bars)
    assert sum(len(channel) for channel in drawn.values()) == len(buckets) == 3 * len(drawn)
    dst_day = next(b for b in buckets if b["start"].startswith("2023-03-26"))
    assert dst_day["expected_intervals"] == 92
    table_rows = page.find_elements(By.CSS_SELECTOR, "#daily table.numbers tbody tr")
    assert len(table_rows) == len(buckets)
    assert console_errors(page) == []


def test_load_profile_of_the_spring_forward_day(page, site, dst_muid):
    open_meter(page, site, dst_muid)
    set_inputs(page, {"profile-day": "2023-03-26", "profile-span": "1", "profile-interval": "hour"})
    (hours,) = bars(page, "profile").values()
    assert [bar["label"] for bar in hours] == ["00:00", "01:00", *[f"{h:02d}:00" for h in range(3, 24)]]
    buckets = api_json(
        site,
        f"/api/v1/meters/{dst_muid}/energy?interval=hour&start=2023-03-26&end=2023-03-27&tz=Europe/Zurich",
    )["buckets"]
    assert [bar["value"] for bar in hours] == [b["energy_kwh"] for b in buckets]
    set_inputs(page, {"profile-interval": "15min"})
    line = page.find_element(By.CSS_SELECTOR, "#profile path.line")
    assert line.get_attribute("data-count") == "92"
    assert "Energy per 15 minutes (kWh)" in page.find_element(By.CSS_SELECTOR, "#profile svg").text


def test_completeness_calendar_shows_the_known_gap(page, site):
    open_meter(page, site, MUID_1)
    set_inputs(page, {"range-start": "2023-02-01", "range-end": "2023-02-05"})
    cells = page.find_elements(By.CSS_SELECTOR, "#calendar td.day")
    by_day = {cell.get_attribute("data-day"): cell for cell in cells}
    assert sorted(by_day) == [f"2023-02-0{d}" for d in range(1, 6)]
    # The data starts at 00:00 UTC = 01:00 in Zurich: the first local day misses its first 4 quarter-hours.
    gap = by_day["2023-02-01"]
    assert "partial" in gap.get_attribute("class").split()
    assert gap.get_attribute("data-missing") == "4" and "−4" in gap.text
    assert all("complete" in by_day[f"2023-02-0{d}"].get_attribute("class").split() for d in range(2, 6))


def test_meters_are_searched_and_chosen_with_the_keyboard(page, site, warehouse):
    page.get(site + "/")
    wait_ready(page)
    search = page.find_element(By.ID, "meter-search")
    search.send_keys(MUID_1[:4])
    WebDriverWait(page, WAIT_S).until(
        lambda d: (
            [b.get_attribute("data-muid") for b in d.find_elements(By.CSS_SELECTOR, "#meter-list button")]
            == [MUID_1]
        )
    )
    assert "1 meter" in page.find_element(By.ID, "meters-page").text
    search.send_keys(Keys.TAB)
    focused = page.switch_to.active_element
    assert focused.get_attribute("data-muid") == MUID_1
    focused.send_keys(Keys.ENTER)
    wait_ready(page, MUID_1)
    assert focused.get_attribute("aria-pressed") == "true"


def test_csv_links_name_what_is_on_screen(page, site):
    open_meter(page, site, MUID_1)
    set_inputs(page, {"range-start": "2023-02-01", "range-end": "2023-02-03"})
    href = page.find_element(By.CSS_SELECTOR, "#daily a.csv").get_attribute("href")
    assert "format=csv" in href and "start=2023-02-01" in href and "end=2023-02-04" in href
    with urllib.request.urlopen(href, timeout=10) as response:
        assert response.headers.get_content_type() == "text/csv"
        assert len(response.read().decode().splitlines()) == 1 + 3


def test_readable_at_phone_width(page, site):
    # A desktop window cannot be narrower than ~500 px: the phone's viewport is emulated instead.
    phone = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
    page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", phone)
    try:
        open_meter(page, site, MUID_1)
        assert page.execute_script("return window.innerWidth") == 390
        assert page.execute_script("return document.documentElement.scrollWidth") <= 390
        charts = page.execute_script(
            "return [...document.querySelectorAll('svg.chart')].map((s) => s.getBoundingClientRect().right)"
        )
        assert charts and max(charts) <= 390
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_both_real_meters_show_february_2023(page, site):
    for muid in REAL_METERS.values():
        open_meter(page, site, muid)
        if SHARED_DATA.is_dir():  # the real files hold February 2023: the default range (the last month)
            assert page.find_element(By.ID, "range-start").get_attribute("value") == "2023-02-01"
        else:  # synthetic files run on to March
            set_inputs(page, {"range-start": "2023-02-01", "range-end": "2023-02-28"})
        (days,) = bars(page, "daily").values()
        february = [bar for bar in days if bar["label"].startswith("02-")]
        assert len(february) == 28 and all(bar["value"] > 0 for bar in february), muid
        assert page.find_elements(By.CSS_SELECTOR, "#profile path.line")
        assert len(page.find_elements(By.CSS_SELECTOR, "#calendar td.day")) == len(days)


def test_screenshot_of_the_real_meter(page, site):
    page.set_window_size(1280, 1000)
    open_meter(page, site, MUID_1)
    set_inputs(page, {"range-start": "2023-02-01", "range-end": "2023-02-28", "profile-day": "2023-02-14"})
    height = page.execute_script("return document.documentElement.scrollHeight")
    page.set_window_size(1280, height + 140)
    try:
        wait_ready(page, MUID_1)
        png = page.get_screenshot_as_png()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        if os.environ.get("UPDATE_SCREENSHOT"):
            Path(SCREENSHOT).write_bytes(png)
    finally:
        page.set_window_size(1280, 1000)


# --- with API keys ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_site(warehouse):
    app = create_app({"conninfo": conninfo(warehouse.pg), "api_keys": ["k-dashboard-1"]})
    with live_server(app) as base:
        yield base


def test_with_api_keys_the_page_asks_for_a_key_then_draws(page, keyed_site):
    page.get(keyed_site + "/")
    WebDriverWait(page, WAIT_S).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "needs-key"
    )
    form = page.find_element(By.ID, "key-form")
    assert form.is_displayed() and "401" in form.text and "key" in form.text
    assert not page.find_elements(By.CSS_SELECTOR, "rect.bar")
    field = page.find_element(By.ID, "api-key")
    assert page.switch_to.active_element == field
    field.send_keys("wrong-key", Keys.ENTER)
    WebDriverWait(page, WAIT_S).until(lambda d: "did not accept" in d.find_element(By.ID, "key-message").text)
    field.send_keys("k-dashboard-1", Keys.ENTER)
    wait_ready(page)
    assert page.find_elements(By.CSS_SELECTOR, "#daily rect.bar")
    stored = page.execute_script(
        "return [sessionStorage.getItem('exnaton-api-key'), localStorage.length, document.cookie]"
    )
    assert stored == ["k-dashboard-1", 0, ""]
    assert foreign(requested_urls(page)) == []


def test_swagger_ui_authorize_sends_the_key(page, keyed_site):
    page.get(keyed_site + "/docs")
    wait = WebDriverWait(page, WAIT_S)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button.authorize"))[0].click()
    key_input = wait.until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, ".modal-ux input[type=text], .modal-ux input[type=password]"
        )
    )
    sections = page.find_elements(By.CSS_SELECTOR, ".modal-ux .auth-container")
    api_key_section = next(s for s in sections if "X-API-Key" in s.text)
    api_key_section.find_element(By.CSS_SELECTOR, "input").send_keys("k-dashboard-1")
    api_key_section.find_element(By.CSS_SELECTOR, "button.authorize").click()
    assert key_input
    page.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done, .modal-ux .close-modal").click()
    operation = wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/api/v1/meters']")
    )[0]
    operation.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock.is-open button.try-out__btn"))[0].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock.is-open button.execute"))[0].click()
    status = wait.until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, ".opblock.is-open .live-responses-table tbody .response-col_status"
        )
    )[0]
    assert status.text.strip().startswith("200"), status.text
    assert (
        "X-API-Key: k-dashboard-1"
        in page.find_element(By.CSS_SELECTOR, ".opblock.is-open .curl-command").text
    )
    assert foreign(requested_urls(page)) == []


# --- pipeline runs panel, over a real run history (a failed run included) ---------------------------


def runs_panel(driver) -> list[dict]:
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.ID, "runs").get_attribute("data-state") in ("ready", "error")
    )
    assert driver.find_element(By.ID, "runs").get_attribute("data-state") == "ready"
    return driver.execute_script(
        """
        return [...document.querySelectorAll("#runs-table tbody tr")].map((row) => ({
          run_id: row.dataset.runId, state: row.dataset.state, readings: Number(row.dataset.readings),
          cells: [...row.cells].map((cell) => cell.textContent.trim()),
          failed: [...row.querySelectorAll(".failed-meters [data-muid]")].map((item) => item.dataset.muid),
        }));
        """
    )


def test_the_runs_panel_shows_the_real_runs_with_the_failed_meter(page, run_history):
    # A threshold of a day: the history may be older than the default 30 minutes when the whole suite runs.
    app = create_app({"conninfo": conninfo(run_history.pg), "stale_after_s": 86_400})
    with live_server(app) as base:
        page.get(base + "/")
        wait_ready(page)
        shown = runs_panel(page)
        runs = api_json(base, "/api/v1/pipeline/runs")
    assert [(row["run_id"], row["state"], row["readings"]) for row in shown] == [
        (run["run_id"], run["state"], run["readings_loaded"]) for run in runs
    ]
    assert [row["state"] for row in shown] == ["success", "failed", "success"]
    failed = shown[1]
    assert failed["failed"] == [FIXTURE_METERS[1].muid]
    assert "HTTP 503" in failed["cells"][4] and failed["cells"][2] == "failed" and failed["cells"][3] == "96"
    assert shown[2]["cells"][3] == "384" and shown[0]["cells"][4] == "–"
    assert page.find_element(By.ID, "runs-summary").text.startswith("The last 3 of 3 runs")
    assert not page.find_element(By.ID, "stale-warning").is_displayed()
    assert console_errors(page) == []


def test_the_stale_warning_appears_and_goes_with_the_next_successful_run(page, run_history):
    stale_after = 15
    app = create_app({"conninfo": conninfo(run_history.pg), "stale_after_s": stale_after})
    before = {row[0] for row in run_history.query("select id from meltano.runs")}
    try:
        with live_server(app) as base:
            WebDriverWait(page, 60, poll_frequency=1).until(
                lambda _: api_json(base, "/api/v1/pipeline/freshness")["stale"]
            )
            page.get(base + "/")
            wait_ready(page)
            runs_panel(page)
            warning = page.find_element(By.ID, "stale-warning")
            assert warning.is_displayed() and warning.text.startswith(
                "Stale data: the last successful pipeline run"
            )

            run_history.meltano("run", "tap-exnaton", "target-postgres")  # nothing new: a quick success
            page.find_element(By.ID, "runs-refresh").click()
            WebDriverWait(page, WAIT_S).until(
                lambda d: not d.find_element(By.ID, "stale-warning").is_displayed()
            )
            shown = runs_panel(page)
            assert len(shown) == 4 and shown[0]["state"] == "success" and shown[0]["readings"] == 0
            assert console_errors(page) == []
    finally:
        # The history stays as the other tests of the session know it.
        run_history.execute("delete from meltano.runs where not (id = any(%s))", [list(before)])
