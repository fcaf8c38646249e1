// The operator dashboard (signalserver/dashboard.py): polls the server's figures and draws them
// with the vendored uPlot. Counters are totals since their server started; rates are differences
// between two polls over the server's clock. A total that went down (a process type restarted at
// zero while others kept counting) leaves a gap, not a spike.
// What the page has drawn is in `window.signalserverDashboard` (the browser tests read it).
"use strict";

(function () {
  const root = document.getElementById("dashboard");
  const status = document.getElementById("dashboard-status");
  const intervalMs = Number(root.dataset.intervalSeconds) * 1000;
  const REGISTRATION_POLLS = 30; // the per-day counts read the accounts table: once a minute at 2 s
  const WINDOW_SECONDS = 600; // what the time charts keep
  const keep = Math.max(2, Math.ceil((WINDOW_SECONDS * 1000) / intervalMs));
  const HEIGHT = 200;
  const DAY = 86400;
  const COLOURS = ["#417690", "#e08e0b", "#ba2121"];

  const total = (counts) => Object.values(counts || {}).reduce((sum, n) => sum + n, 0);
  const rate = (label, read, scale) => ({ label, read, scale, rate: true });
  const level = (label, read, scale) => ({ label, read, scale, rate: false });

  // Chart name (the template's data-chart) → its series, read from one poll's figures.
  const CHARTS = {
    messages: [rate("sent", (f) => total(f.messages_sent))],
    deliveries: [
      rate("delivered", (f) => total(f.messages_delivered)),
      rate("acknowledged", (f) => total(f.messages_acknowledged)),
    ],
    sockets: [level("open", (f) => f.open_sockets)],
    queue: [
      level("depth", (f) => f.queue_depth),
      level("oldest (hours)", (f) => f.queue_oldest_age_seconds / 3600, "hours"),
    ],
    refusals: [rate("refused", (f) => total(f.rate_limit_refusals))],
    pushes: [
      rate("failed", (f) => f.push_notifications.failed || 0),
      rate("invalid token", (f) => f.push_notifications.invalid_token || 0),
      rate("retry", (f) => f.push_notifications.retry || 0),
    ],
  };

  const state = (window.signalserverDashboard = {
    polls: 0, // figures received and drawn
    failures: 0,
    latest: null, // the last figures
    data: {}, // chart name → uPlot's columns: [times, series...]
    registrations: null, // [{day, accounts}], oldest first
    charts: {},
  });

  const zeroBased = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];
  const format = (v) => (v == null ? "–" : v >= 100 ? String(Math.round(v)) : String(+v.toFixed(2)));

  function axes(hasHours) {
    const style = getComputedStyle(document.documentElement);
    const stroke = style.getPropertyValue("--body-quiet-color").trim() || "#666";
    const grid = { stroke: style.getPropertyValue("--hairline-color").trim() || "#e8e8e8", width: 1 };
    const list = [{ stroke, grid, ticks: grid }, { stroke, grid, ticks: grid, scale: "y" }];
    if (hasHours) list.push({ stroke, grid: { show: false }, ticks: grid, scale: "hours", side: 1, label: "hours" });
    return list;
  }

  function widthOf(element) {
    return Math.max(200, element.clientWidth);
  }

  function timeChart(name, element) {
    const series = CHARTS[name];
    const hasHours = series.some((s) => s.scale === "hours");
    const scales = { x: { time: true }, y: { range: zeroBased } };
    if (hasHours) scales.hours = { range: zeroBased };
    const options = {
      width: widthOf(element),
      height: HEIGHT,
      scales,
      axes: axes(hasHours),
      series: [
        {},
        ...series.map((s, index) => ({
          label: s.label,
          scale: s.scale || "y",
          stroke: COLOURS[index],
          width: 2,
          value: (u, v) => format(v),
        })),
      ],
    };
    state.data[name] = [[], ...series.map(() => [])];
    return new uPlot(options, state.data[name], element);
  }

  function registrationChart(element) {
    const utc = (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC");
    const options = {
      width: widthOf(element),
      height: HEIGHT,
      tzDate: utc,
      scales: { x: { time: true, range: (u, min, max) => [min - DAY / 2, max + DAY / 2] }, y: { range: zeroBased } },
      axes: axes(false),
      series: [
        { label: "Day", value: (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().slice(0, 10)) },
        {
          label: "new accounts",
          stroke: COLOURS[0],
          fill: COLOURS[0] + "99",
          width: 1,
          paths: uPlot.paths.bars({ size: [0.6, 48] }),
          points: { show: false },
          value: (u, v) => format(v),
        },
      ],
    };
    state.data.registrations = [[], []];
    return new uPlot(options, state.data.registrations, element);
  }

  function pointOf(s, figures, previous) {
    const now = s.read(figures);
    if (!s.rate) return now;
    if (previous === null || figures.time <= previous.time) return null;
    const before = s.read(previous);
    return now >= before ? (now - before) / (figures.time - previous.time) : null;
  }

  // The legend shows the latest values unless the pointer is over the chart.
  function draw(chart, data) {
    chart.setData(data);
    if (chart.cursor.left < 0 && data[0].length) chart.setLegend({ idx: data[0].length - 1 });
  }

  function record(figures) {
    for (const [name, series] of Object.entries(CHARTS)) {
      const data = state.data[name];
      data[0].push(figures.time);
      series.forEach((s, index) => data[index + 1].push(pointOf(s, figures, state.latest)));
      if (data[0].length > keep) data.forEach((column) => column.splice(0, column.length - keep));
      draw(state.charts[name], data);
    }
    state.latest = figures;
    state.polls += 1;
    root.dataset.polls = String(state.polls);
  }

  function showRegistrations(days) {
    const data = state.data.registrations;
    data[0] = days.map((d) => Date.parse(d.day + "T00:00:00Z") / 1000);
    data[1] = days.map((d) => d.accounts);
    state.registrations = days;
    draw(state.charts.registrations, data);
  }

  async function getJSON(url) {
    // A lapsed session would redirect to the login page: say so rather than parse its HTML.
    const response = await fetch(url, { credentials: "same-origin", redirect: "manual", headers: { Accept: "application/json" } });
    if (response.type === "opaqueredirect") throw new Error("logged out: reload the page to log in again");
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  function failed(error) {
    state.failures += 1;
    status.textContent = "The figures could not be read (" + error.message + "); trying again.";
    status.classList.add("failing");
  }

  function showStatus(figures) {
    const heartbeat = figures.celery_heartbeat;
    const celery = heartbeat ? "Celery's last heartbeat " + Math.round(figures.time - heartbeat) + " s ago" : "no Celery heartbeat seen";
    status.textContent =
      "Updated " + new Date(figures.time * 1000).toLocaleTimeString() + ", every " + intervalMs / 1000 + " s; " + celery + ".";
    status.classList.remove("failing");
  }

  async function pollFigures() {
    try {
      const figures = await getJSON(root.dataset.figuresUrl);
      record(figures);
      showStatus(figures);
    } catch (error) {
      failed(error);
    } finally {
      setTimeout(pollFigures, intervalMs);
    }
  }

  async function pollRegistrations() {
    try {
      showRegistrations((await getJSON(root.dataset.registrationsUrl)).days);
    } catch (error) {
      failed(error);
    } finally {
      setTimeout(pollRegistrations, intervalMs * REGISTRATION_POLLS);
    }
  }

  for (const element of root.querySelectorAll("[data-chart]")) {
    const name = element.dataset.chart;
    state.charts[name] = name === "registrations" ? registrationChart(element) : timeChart(name, element);
  }
  window.addEventListener("resize", () => {
    for (const element of root.querySelectorAll("[data-chart]")) {
      state.charts[element.dataset.chart].setSize({ width: widthOf(element), height: HEIGHT });
    }
  });
  pollFigures();
  pollRegistrations();
})();
