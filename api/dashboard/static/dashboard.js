/* The dashboard: a client of the public REST API (/api/v1) only, drawing with charts.js.
 *
 * body[data-state] tells what the page is doing: loading, ready, needs-key or error.
 */
"use strict";

(() => {
  const API = "/api/v1";
  const METERS_PER_PAGE = 20;
  const KEY_STORAGE = "exnaton-api-key";
  const DIRECTION_NAMES = { import: "Import (consumption)", export: "Export (feed-in)" };
  const byId = (id) => document.getElementById(id);

  const state = {
    tz: document.body.dataset.defaultTz || "UTC",
    meter: null,
    page: 1,
    prefix: "",
    tokens: {},
    drawn: {},
    pending: 0,
  };

  class NeedsKey extends Error {}

  // --- the API -------------------------------------------------------------------------------------

  function apiUrl(path, params = {}) {
    const query = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== undefined && value !== ""));
    const text = query.toString();
    return `${API}${path}${text ? `?${text}` : ""}`;
  }

  async function request(path, params, accept = "application/json") {
    const headers = { Accept: accept };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers["X-API-Key"] = key;
    const response = await fetch(apiUrl(path, params), { headers });
    if (response.status === 401) {
      askForKey(key ? "The API did not accept this key (401). Enter a valid API key." : "This API needs a key (401). Enter your API key to see the data.");
      throw new NeedsKey();
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        message = (await response.json()).message || message;
      } catch {
        // not a JSON error body: keep the status line
      }
      throw new Error(message);
    }
    showFreshness(response.headers.get("X-Data-Loaded-At"));
    return response;
  }

  async function getJson(path, params) {
    const response = await request(path, params);
    return { body: await response.json(), headers: response.headers };
  }

  const meterPath = (suffix = "") => `/meters/${encodeURIComponent(state.meter.muid)}${suffix}`;

  // --- messages, key, freshness --------------------------------------------------------------------

  function report(error) {
    if (error instanceof NeedsKey) {
      document.body.dataset.state = "needs-key";
      return;
    }
    const alert = byId("alert");
    alert.textContent = error.message;
    alert.hidden = false;
    document.body.dataset.state = "error";
  }

  function clearAlert() {
    byId("alert").hidden = true;
  }

  function askForKey(message) {
    byId("key-message").textContent = message;
    byId("key-form").hidden = false;
    byId("api-key").focus();
  }

  function ago(minutes) {
    if (minutes < 1) return "just now";
    if (minutes < 120) return `${minutes} minutes ago`;
    if (minutes < 48 * 60) return `${Math.round(minutes / 60)} hours ago`;
    return `${Math.round(minutes / 1440)} days ago`;
  }

  function showFreshness(value) {
    if (!value) return;
    const loaded = new Date(value);
    const when = new Intl.DateTimeFormat("en-GB", { timeZone: state.tz, dateStyle: "medium", timeStyle: "short" }).format(loaded);
    const freshness = byId("freshness");
    freshness.textContent = `Data loaded at ${when} (${state.tz}), ${ago(Math.round((Date.now() - loaded) / 60000))}`;
    freshness.dataset.loadedAt = value;
  }

  // --- dates: local calendar days as YYYY-MM-DD ----------------------------------------------------

  function localDate(instant, tz) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(instant));
  }

  function addDays(day, count) {
    const date = new Date(`${day}T00:00:00Z`);
    date.setUTCDate(date.getUTCDate() + count);
    return date.toISOString().slice(0, 10);
  }

  const later = (a, b) => (a > b ? a : b);
  const wallTime = (iso) => iso.slice(0, 16).replace("T", " ");
  const kwh = (value, digits = 4) => value.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });

  // --- meters ---------------------------------------------------------------------------------------

  async function loadMeters() {
    const { body, headers } = await getJson("/meters", { page: state.page, page_size: METERS_PER_PAGE, muid_prefix: state.prefix });
    renderMeterList(body, JSON.parse(headers.get("X-Pagination") || "{}"));
    return body;
  }

  function renderMeterList(meters, pagination) {
    const items = meters.map((meter) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "meter-button";
      button.dataset.muid = meter.muid;
      button.setAttribute("aria-pressed", String(state.meter?.muid === meter.muid));
      const muid = document.createElement("span");
      muid.className = "muid";
      muid.textContent = meter.muid;
      const detail = document.createElement("span");
      detail.className = "detail";
      detail.textContent = `${meter.stream_name} · ${meter.channels.map((c) => c.direction).join(", ")}`;
      button.append(muid, detail);
      button.addEventListener("click", () => selectMeter(meter));
      const item = document.createElement("li");
      item.append(button);
      return item;
    });
    if (!items.length) {
      const empty = document.createElement("li");
      empty.textContent = state.prefix ? `No meter id starts with “${state.prefix}”.` : "No meters yet: run the pipeline (make run).";
      items.push(empty);
    }
    byId("meter-list").replaceChildren(...items);
    const total = pagination.total ?? meters.length;
    byId("meters-page").textContent = `Page ${pagination.page ?? 1} of ${pagination.total_pages ?? 1} · ${total} meter${total === 1 ? "" : "s"}`;
    byId("meters-prev").disabled = !pagination.previous_page;
    byId("meters-next").disabled = !pagination.next_page;
  }

  function selectMeter(meter) {
    state.meter = meter;
    history.replaceState(null, "", `#${encodeURIComponent(meter.muid)}`);
    for (const button of document.querySelectorAll("#meter-list button")) {
      button.setAttribute("aria-pressed", String(button.dataset.muid === meter.muid));
    }
    byId("meter").hidden = false;
    byId("meter").dataset.muid = meter.muid;
    byId("meter-heading").textContent = `Meter ${meter.muid}`;
    describeMeter();
    setDefaultRange();
    refresh("daily", "profile", "calendar");
  }

  function describeMeter() {
    const meter = state.meter;
    const channels = meter.channels.map((c) => `${DIRECTION_NAMES[c.direction] || c.direction} ${c.obis_code}`).join("; ");
    const readings = meter.first_reading_at
      ? `${meter.reading_count.toLocaleString("en")} readings from ${wallTime(meter.first_reading_at)} to ${wallTime(meter.last_reading_at)} UTC`
      : "no readings yet";
    byId("meter-facts").textContent = `Stream ${meter.stream_name} · ${channels} · ${readings}.`;
  }

  /** The last month of the meter's data, in the chosen time zone; the profile shows its last full day. */
  function setDefaultRange() {
    const meter = state.meter;
    if (!meter.last_reading_at) return;
    const end = localDate(meter.last_reading_at, state.tz);
    const start = later(localDate(meter.first_reading_at, state.tz), addDays(end, -30));
    byId("range-start").value = start;
    byId("range-end").value = end;
    byId("profile-day").value = later(start, addDays(end, -1));
  }

  // --- views: each fetches, then draws; an answer that a newer request overtook is dropped ---------

  const views = {
    daily: {
      load() {
        const start = byId("range-start").value;
        const end = byId("range-end").value;
        if (!start || !end || start > end) throw new Error("Choose a ‘From’ day before the ‘To’ day.");
        return { interval: "day", start, end: addDays(end, 1), tz: state.tz };
      },
      render(body, params) {
        renderEnergy(byId("daily"), body, params, {
          kind: "bars",
          xLabel: `Day (${state.tz})`,
          yLabel: "Energy per day (kWh)",
          label: (bucket) => bucket.start.slice(5, 10),
        });
      },
      path: () => meterPath("/energy"),
    },
    profile: {
      load() {
        const day = byId("profile-day").value;
        if (!day) throw new Error("Choose a day for the load profile.");
        const interval = byId("profile-interval").value;
        return { interval, start: day, end: addDays(day, Number(byId("profile-span").value)), tz: state.tz };
      },
      render(body, params) {
        const days = Number(byId("profile-span").value);
        renderEnergy(byId("profile"), body, params, {
          kind: params.interval === "hour" ? "bars" : "line",
          xLabel: `Local time (${state.tz})`,
          yLabel: `Energy per ${params.interval === "hour" ? "hour" : "15 minutes"} (kWh)`,
          label: (bucket) => (days > 1 ? bucket.start.slice(5, 16).replace("T", " ") : bucket.start.slice(11, 16)),
        });
      },
      path: () => meterPath("/energy"),
    },
    calendar: {
      load() {
        const daily = views.daily.load();
        return { start: daily.start, end: daily.end, tz: state.tz };
      },
      render(body, params) {
        renderCalendar(byId("calendar"), body, params);
      },
      path: () => meterPath("/completeness"),
    },
  };

  /** Redraws views; the page is "ready" once no redraw is pending any more. */
  async function refresh(...names) {
    clearAlert();
    state.pending += 1;
    document.body.dataset.state = "loading";
    try {
      await Promise.all(names.map(refreshView));
      state.pending -= 1;
      if (!state.pending) document.body.dataset.state = "ready";
    } catch (error) {
      state.pending -= 1;
      report(error);
    }
  }

  async function refreshView(name) {
    const token = (state.tokens[name] = (state.tokens[name] || 0) + 1);
    const view = views[name];
    const params = view.load();
    const { body } = await getJson(view.path(), params);
    if (token !== state.tokens[name]) return;
    state.drawn[name] = { body, params };
    view.render(body, params);
  }

  function redrawAll() {
    for (const [name, drawn] of Object.entries(state.drawn)) views[name].render(drawn.body, drawn.params);
  }

  // --- drawing --------------------------------------------------------------------------------------

  function channelsOf(rows) {
    const order = state.meter.channels.map((c) => c.obis_code);
    const groups = new Map(order.map((code) => [code, []]));
    for (const row of rows) {
      if (!groups.has(row.obis_code)) groups.set(row.obis_code, []);
      groups.get(row.obis_code).push(row);
    }
    return [...groups].filter(([, list]) => list.length);
  }

  function channelTitle(obisCode) {
    const channel = state.meter.channels.find((c) => c.obis_code === obisCode);
    return `${DIRECTION_NAMES[channel?.direction] || "Channel"} · ${obisCode}`;
  }

  function figure(obisCode, heading, summary) {
    const element = document.createElement("figure");
    element.className = "chart-figure";
    element.dataset.obis = obisCode;
    const caption = document.createElement("figcaption");
    const title = document.createElement("h4");
    title.textContent = heading;
    const note = document.createElement("span");
    note.className = "summary";
    note.textContent = summary;
    caption.append(title, note);
    element.append(caption);
    return element;
  }

  function renderEnergy(container, body, params, options) {
    const figures = channelsOf(body.buckets).map(([obisCode, buckets]) => {
      const total = buckets.reduce((sum, b) => sum + b.energy_kwh, 0);
      const heading = channelTitle(obisCode);
      const element = figure(obisCode, heading, `${kwh(total, 2)} kWh in ${buckets.length} buckets`);
      const plot = document.createElement("div");
      plot.className = "plot";
      element.append(plot, csvLink("/energy", { ...params, obis: obisCode }, "Download CSV"));
      element.append(
        numbersTable(
          `${heading}: energy per bucket`,
          ["Start (local)", "End (local)", "Energy (kWh)", "Readings", "Expected", "Complete %"],
          buckets.map((b) => [wallTime(b.start), wallTime(b.end), kwh(b.energy_kwh), b.reading_count, b.expected_intervals, b.completeness_pct ?? "–"]),
        ),
      );
      return { element, plot, buckets, heading };
    });
    container.replaceChildren(...figures.map((f) => f.element));
    if (!figures.length) container.textContent = "This meter has no channel in this range.";
    for (const { plot, buckets, heading } of figures) {
      Charts.draw(
        plot,
        buckets.map((b) => ({
          label: options.label(b),
          value: b.energy_kwh,
          title: `${wallTime(b.start)}: ${kwh(b.energy_kwh)} kWh (${b.reading_count} of ${b.expected_intervals} readings)`,
        })),
        { kind: options.kind, title: `${heading}: ${options.yLabel} by ${options.xLabel}`, xLabel: options.xLabel, yLabel: options.yLabel },
      );
    }
    if (figures.length && !performance.getEntriesByName("first-chart").length) performance.mark("first-chart");
  }

  function numbersTable(caption, headings, rows) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Table of these numbers";
    const table = document.createElement("table");
    table.className = "numbers";
    const captionElement = table.createCaption();
    captionElement.textContent = caption;
    const head = table.createTHead().insertRow();
    for (const text of headings) {
      const cell = document.createElement("th");
      cell.scope = "col";
      cell.textContent = text;
      head.append(cell);
    }
    const tbody = table.createTBody();
    for (const row of rows) {
      const tr = tbody.insertRow();
      for (const value of row) tr.insertCell().textContent = value;
    }
    details.append(summary, table);
    return details;
  }

  function renderCalendar(container, body, params) {
    const figures = channelsOf(body.days).map(([obisCode, days]) => {
      const missingDays = days.filter((d) => d.missing_intervals > 0).length;
      const heading = channelTitle(obisCode);
      const element = figure(obisCode, heading, missingDays ? `${missingDays} of ${days.length} days incomplete` : `all ${days.length} days complete`);
      element.append(
        calendarGrid(days, `${heading}: received quarter-hours per local day (${state.tz})`),
        numbersTable(
          `${heading}: completeness per local day`,
          ["Day", "Expected", "Received", "Missing", "Complete %"],
          days.map((d) => [d.day, d.expected_intervals, d.received_intervals, d.missing_intervals, d.completeness_pct]),
        ),
      );
      return element;
    });
    const link = csvLink("/completeness", params, "Download CSV");
    container.replaceChildren(...figures, link);
  }

  function calendarGrid(days, caption) {
    const table = document.createElement("table");
    table.className = "calendar";
    table.createCaption().textContent = caption;
    const head = table.createTHead().insertRow();
    for (const name of ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]) {
      const cell = document.createElement("th");
      cell.scope = "col";
      cell.textContent = name;
      head.append(cell);
    }
    const tbody = table.createTBody();
    let row = tbody.insertRow();
    const weekday = (new Date(`${days[0].day}T00:00:00Z`).getUTCDay() + 6) % 7;
    for (let pad = 0; pad < weekday; pad += 1) row.insertCell().className = "outside";
    days.forEach((day, index) => {
      if (index > 0 && (weekday + index) % 7 === 0) row = tbody.insertRow();
      const cell = row.insertCell();
      const kind = day.missing_intervals === 0 ? "complete" : day.received_intervals === 0 ? "empty" : "partial";
      cell.className = `day ${kind}`;
      Object.assign(cell.dataset, { day: day.day, missing: day.missing_intervals, expected: day.expected_intervals });
      cell.title = `${day.day}: ${day.received_intervals} of ${day.expected_intervals} quarter-hours, ${day.missing_intervals} missing`;
      const number = document.createElement("span");
      number.className = "day-number";
      number.textContent = day.day.endsWith("-01") || index === 0 ? day.day.slice(5) : String(Number(day.day.slice(8)));
      const detail = document.createElement("span");
      detail.className = "day-detail";
      detail.textContent = day.missing_intervals ? `−${day.missing_intervals}` : "✓";
      cell.append(number, detail);
    });
    return table;
  }

  /** A link to the CSV of what is on screen; fetched with the key (a plain link cannot send a header). */
  function csvLink(path, params, text) {
    const link = document.createElement("a");
    link.className = "csv";
    link.textContent = text;
    link.href = apiUrl(meterPath(path), { ...params, format: "csv" });
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      try {
        const response = await request(meterPath(path), { ...params, format: "csv" }, "text/csv");
        const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || "data.csv";
        const save = document.createElement("a");
        save.href = URL.createObjectURL(await response.blob());
        save.download = name;
        save.click();
        setTimeout(() => URL.revokeObjectURL(save.href), 10000);
      } catch (error) {
        report(error);
      }
    });
    return link;
  }

  // --- pipeline runs: Meltano's run history and the stale-data warning ------------------------------

  const RUNS_SHOWN = 10;
  const RUNS_REFRESH_MS = 60000;

  /** The run panel has its own state (data-state on #runs): its errors never stop the charts. */
  async function loadRuns() {
    const panel = byId("runs");
    panel.dataset.state = "loading";
    try {
      const [runs, freshness] = await Promise.all([
        getJson("/pipeline/runs", { page_size: RUNS_SHOWN }),
        getJson("/pipeline/freshness"),
      ]);
      renderRuns(runs.body, JSON.parse(runs.headers.get("X-Pagination") || "{}"));
      renderStale(freshness.body);
      byId("runs-message").textContent = "";
      panel.dataset.state = "ready";
    } catch (error) {
      panel.dataset.state = error instanceof NeedsKey ? "needs-key" : "error";
      if (!(error instanceof NeedsKey)) byId("runs-message").textContent = `The run history could not be read: ${error.message}`;
    }
  }

  function duration(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function localTime(instant) {
    return new Intl.DateTimeFormat("en-GB", { timeZone: state.tz, dateStyle: "medium", timeStyle: "medium" }).format(new Date(instant));
  }

  function renderRuns(runs, pagination) {
    const rows = runs.map((run) => {
      const row = document.createElement("tr");
      Object.assign(row.dataset, { runId: run.run_id, state: run.state, readings: run.readings_loaded });
      const started = document.createElement("td");
      started.textContent = localTime(run.started_at);
      started.title = `${run.state_id}, run ${run.run_id}, started by ${run.trigger || "unknown"}`;
      const badge = document.createElement("span");
      badge.className = `run-state ${run.state}`;
      badge.textContent = run.state;
      if (run.error) badge.title = run.error;
      const failed = document.createElement("td");
      failed.className = "failed-meters";
      for (const meter of run.failed_meters) {
        const item = document.createElement("div");
        item.dataset.muid = meter.muid || "";
        const name = document.createElement("span");
        name.className = "muid";
        name.textContent = meter.muid || meter.stream_name;
        const why = document.createElement("span");
        why.className = "detail";
        why.textContent = ` ${meter.error}`;
        item.append(name, why);
        failed.append(item);
      }
      if (!run.failed_meters.length) failed.textContent = "–";
      const cells = [started, duration(run.duration_seconds), badge, run.readings_loaded.toLocaleString("en"), failed];
      for (const cell of cells) {
        if (cell instanceof HTMLTableCellElement) row.append(cell);
        else row.insertCell().append(cell);
      }
      return row;
    });
    byId("runs-table").tBodies[0].replaceChildren(...rows);
    const total = pagination.total ?? runs.length;
    byId("runs-summary").textContent = total
      ? `The last ${runs.length} of ${total} run${total === 1 ? "" : "s"} of meltano run, newest first (times in ${state.tz}).`
      : "No pipeline run is recorded in this database yet: run the pipeline (make run).";
  }

  function renderStale(freshness) {
    const warning = byId("stale-warning");
    warning.hidden = !freshness.stale;
    warning.dataset.stale = String(freshness.stale);
    const limit = `${Math.round(freshness.stale_after_seconds / 60)} minutes`;
    warning.textContent = freshness.last_success_at
      ? `Stale data: the last successful pipeline run ended ${ago(Math.round(freshness.age_seconds / 60))} ` +
        `(${localTime(freshness.last_success_at)}); one is expected at least every ${limit}.`
      : "Stale data: no successful pipeline run is recorded in this database yet.";
  }

  // --- controls -------------------------------------------------------------------------------------

  function fillZones() {
    let zones = [];
    try {
      zones = Intl.supportedValuesOf("timeZone");
    } catch {
      // an older browser: the default zone and UTC only
    }
    const all = [...new Set([state.tz, "UTC", ...zones])].sort();
    byId("tz").replaceChildren(...all.map((zone) => new Option(zone, zone, zone === state.tz, zone === state.tz)));
  }

  function debounce(action, ms) {
    let timer;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => action(...args), ms);
    };
  }

  function wireControls() {
    const search = debounce(() => {
      state.prefix = byId("meter-search").value.trim();
      state.page = 1;
      loadMeters().catch(report);
    }, 250);
    byId("meter-search").addEventListener("input", search);
    byId("meters-prev").addEventListener("click", () => {
      state.page -= 1;
      loadMeters().catch(report);
    });
    byId("meters-next").addEventListener("click", () => {
      state.page += 1;
      loadMeters().catch(report);
    });
    byId("range-start").addEventListener("change", () => refresh("daily", "calendar"));
    byId("range-end").addEventListener("change", () => refresh("daily", "calendar"));
    for (const id of ["profile-day", "profile-span", "profile-interval"]) byId(id).addEventListener("change", () => refresh("profile"));
    byId("tz").addEventListener("change", () => {
      state.tz = byId("tz").value;
      refresh("daily", "profile", "calendar");
    });
    for (const id of ["range-form", "profile-form"]) byId(id).addEventListener("submit", (event) => event.preventDefault());
    byId("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, byId("api-key").value.trim());
      byId("api-key").value = "";
      byId("key-form").hidden = true;
      start();
    });
    byId("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      byId("key-message").textContent = "The key is forgotten.";
    });
    byId("key-open").addEventListener("click", () => askForKey("Enter the API key (needed when the server sets API_KEYS)."));
    byId("runs-refresh").addEventListener("click", loadRuns);
    setInterval(loadRuns, RUNS_REFRESH_MS);
    let width = window.innerWidth;
    window.addEventListener(
      "resize",
      debounce(() => {
        if (window.innerWidth === width) return;
        width = window.innerWidth;
        redrawAll();
      }, 150),
    );
  }

  /** The meter named in the address (#muid), else the first of the list. */
  async function meterToShow(listed) {
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (!wanted) return listed[0];
    const meter = listed.find((m) => m.muid === wanted);
    if (meter) return meter;
    return getJson(`/meters/${encodeURIComponent(wanted)}`).then(({ body }) => body, () => listed[0]);
  }

  async function start() {
    clearAlert();
    loadRuns();
    try {
      const meter = await meterToShow(await loadMeters());
      if (meter) selectMeter(meter);
      else document.body.dataset.state = "ready";
    } catch (error) {
      report(error);
    }
  }

  window.addEventListener("hashchange", () => {
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted && wanted !== state.meter?.muid) {
      getJson(`/meters/${encodeURIComponent(wanted)}`).then(({ body }) => selectMeter(body), report);
    }
  });

  fillZones();
  wireControls();
  start();
})();
