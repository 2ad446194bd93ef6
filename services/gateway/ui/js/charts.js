// Metric charts: uPlot line charts of downsampled histories, many runs overlaid, in a grid of cards
// that only draw (and fetch) while in view, so a run with thousands of metric keys opens at once.
import { getHistoryBulkInterval } from "./api.js";
import { clear, formatTime, formatValue, h, metricValue } from "./dom.js";

// Counters the browser tests (and curious users) read: window.mlgridCharts.
export const stats = (window.mlgridCharts = { live: 0, created: 0, requests: 0, pointsFetched: 0 });

const RUNS_PER_REQUEST = 100; // the API's limit
const CARDS_PER_BATCH = 60; // placeholders added at a time as the grid is scrolled
const PLOT_HEIGHT = 210;
const SETTINGS_KEY = "mlgrid.chartSettings";
// Tick spacings of a step axis: whole steps only.
const STEP_INCRS = Array.from({ length: 16 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

// ---------------------------------------------------------------- settings shared by every chart

export const settings = {
  x: "step", // "step" | "time" (wall clock) | "relative" (seconds since the run's first point)
  smoothing: 0, // exponential moving average weight, 0 to 0.99
  log: false,
  ...JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}"),
  listeners: new Set(),
};

function changeSettings(change) {
  Object.assign(settings, change);
  const { listeners, ...saved } = settings;
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(saved));
  for (const listener of listeners) listener();
}

export function settingsBar() {
  const smoothingLabel = h("span.muted", {}, settings.smoothing.toFixed(2));
  return h(
    "div.chart-settings",
    {},
    h("label", {}, "X axis ",
      h("select", { onchange: (e) => changeSettings({ x: e.target.value }) },
        [["step", "Step"], ["time", "Time"], ["relative", "Relative time"]].map(([value, label]) =>
          h("option", { value, selected: settings.x === value }, label)))),
    h("label", {}, "Smoothing ",
      h("input", {
        type: "range", min: 0, max: 0.99, step: 0.01, value: settings.smoothing, name: "smoothing",
        oninput: (e) => {
          smoothingLabel.textContent = Number(e.target.value).toFixed(2);
          changeSettings({ smoothing: Number(e.target.value) });
        },
      }), " ", smoothingLabel),
    h("label", {}, h("input", { type: "checkbox", name: "log", checked: settings.log, onchange: (e) => changeSettings({ log: e.target.checked }) }), " Log scale"),
    h("span.muted", {}, "Drag across a chart to zoom (full resolution), double-click to reset."),
  );
}

// ---------------------------------------------------------------- data

// Points per run: about two per pixel for one run, fewer as runs share a chart (100 runs stay smooth).
export function pointsPerRun(width, runCount) {
  const full = Math.max(200, Math.min(2500, Math.round(width * 2)));
  return Math.max(100, Math.min(full, Math.floor(40000 / runCount)));
}

// {run_id: {steps, times, values}} of one metric for the runs, within [startStep, endStep] when given.
export async function fetchHistories(runIds, key, maxResults, range, signal) {
  const requests = [];
  for (let i = 0; i < runIds.length; i += RUNS_PER_REQUEST) {
    stats.requests += 1;
    requests.push(getHistoryBulkInterval(
      { runIds: runIds.slice(i, i + RUNS_PER_REQUEST), key, maxResults, startStep: range?.[0], endStep: range?.[1] },
      signal,
    ));
  }
  const byRun = Object.fromEntries(runIds.map((id) => [id, { steps: [], times: [], values: [] }]));
  for (const response of await Promise.all(requests)) {
    const metrics = response.metrics || [];
    stats.pointsFetched += metrics.length;
    for (const m of metrics) {
      const series = byRun[m.run_id];
      series.steps.push(Number(m.step || 0));
      series.times.push(Number(m.timestamp || 0));
      series.values.push(metricValue(m));
    }
  }
  return byRun;
}

// TensorBoard's smoothing: an exponential moving average, debiased so the start is not pulled to 0.
export function smooth(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let last = 0;
  let count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    last = last * weight + (1 - weight) * v;
    count += 1;
    out[i] = last / (1 - weight ** count);
  }
  return out;
}

function xValues(series) {
  if (settings.x === "step") return series.steps;
  if (settings.x === "time") return series.times.map((t) => t / 1000);
  const first = Math.min(...series.times);
  return series.times.map((t) => (t - first) / 1000);
}

// uPlot's aligned columns [xs, ys of run 1, ys of run 2, ...] (runs without points are left out).
function alignedData(runs, histories) {
  const tables = [];
  const shown = [];
  for (const run of runs) {
    const series = histories[run.id];
    if (!series || !series.steps.length) continue;
    let xs = xValues(series);
    let ys = smooth(series.values, settings.smoothing).map((v) =>
      !Number.isFinite(v) || (settings.log && v <= 0) ? null : v);
    if (settings.x !== "step") {
      const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
      xs = order.map((i) => xs[i]);
      ys = order.map((i) => ys[i]);
    }
    tables.push([xs, ys]);
    shown.push(run);
  }
  if (!tables.length) return { data: null, shown };
  return { data: tables.length === 1 ? tables[0] : uPlot.join(tables), shown };
}

// The steps a chart shows between x values lo and hi (x being steps or times).
function stepRange(histories, lo, hi) {
  let min = Infinity;
  let max = -Infinity;
  for (const series of Object.values(histories)) {
    const xs = xValues(series);
    for (let i = 0; i < xs.length; i++) {
      if (xs[i] >= lo && xs[i] <= hi) {
        min = Math.min(min, series.steps[i]);
        max = Math.max(max, series.steps[i]);
      }
    }
  }
  return min <= max ? [Math.floor(min), Math.ceil(max)] : null;
}

// ---------------------------------------------------------------- one chart

export class MetricChart {
  // runs: [{id, name, color}]
  constructor(el, key, runs) {
    this.el = el;
    this.key = key;
    this.runs = runs;
    this.plot = null;
    this.histories = null;
    this.range = null; // [startStep, endStep] while zoomed
    this.abort = null;
    this.body = h("div.plot");
    this.status = h("span.muted");
    this.hovered = h("span.hovered");
    this.resetLink = h("a.reset", { href: "#", hidden: true, onclick: (e) => { e.preventDefault(); this.zoom(null); } }, "reset zoom");
    clear(el, h("div.chart-title", { title: key }, h("span.key", {}, key), " ", this.status, " ", this.resetLink, " ", this.hovered), this.body);
    el.dataset.state = "loading";
  }

  async load() {
    this.abort?.abort();
    this.abort = new AbortController();
    const width = this.el.clientWidth || 400;
    this.status.textContent = "loading…";
    try {
      const ids = this.runs.map((r) => r.id);
      this.histories = await fetchHistories(ids, this.key, pointsPerRun(width, ids.length), this.range, this.abort.signal);
    } catch (error) {
      if (error.name === "AbortError") return;
      this.el.dataset.state = "error";
      this.status.textContent = error.message;
      return;
    }
    this.draw();
  }

  zoom(range) {
    this.range = range;
    this.resetLink.hidden = !range;
    this.load();
  }

  draw() {
    this.destroyPlot();
    if (!this.histories) return;
    const { data, shown } = alignedData(this.runs, this.histories);
    const raw = Object.values(this.histories);
    const points = raw.reduce((n, s) => n + s.steps.length, 0);
    const finite = raw.flatMap((s) => s.values.filter(Number.isFinite));
    this.el.dataset.points = String(points);
    this.el.dataset.max = finite.length ? String(finite.reduce((a, b) => Math.max(a, b))) : "";
    this.el.dataset.min = finite.length ? String(finite.reduce((a, b) => Math.min(a, b))) : "";
    this.status.textContent = this.range ? `steps ${this.range[0]}–${this.range[1]}, ${points} points` : `${points} points`;
    if (!data) {
      this.el.dataset.state = "empty";
      clear(this.body, h("div.empty", {}, "no points"));
      return;
    }
    const width = Math.max(200, this.el.clientWidth - 16);
    const xLabel = { step: "step", time: "time", relative: "seconds" }[settings.x];
    this.plot = new uPlot(
      {
        width,
        height: PLOT_HEIGHT,
        scales: { x: { time: settings.x === "time" }, y: { distr: settings.log ? 3 : 1 } },
        legend: { show: shown.length <= 8, live: shown.length <= 8 },
        // The run nearest the cursor stands out (and is named in the title when there is no legend).
        focus: { alpha: 0.25 },
        cursor: { drag: { x: true, y: false, setScale: false }, focus: { prox: 16 } },
        series: [
          { label: xLabel, value: (u, v) => (v == null ? "" : settings.x === "time" ? formatTime(v * 1000) : formatValue(v)) },
          ...shown.map((run) => ({
            // null (NaN, or <= 0 on a log scale) breaks the line; undefined (a step only other runs have) does not
            label: run.name, stroke: run.color, width: 1.25,
            value: (u, v) => (v == null ? "" : formatValue(v)),
          })),
        ],
        axes: [settings.x === "step" ? { incrs: STEP_INCRS } : {}, { size: 64, values: (u, ticks) => ticks.map(formatValue) }],
        hooks: {
          setSelect: [(u) => this.selected(u)],
          setSeries: [(u, index) => { this.hovered.textContent = index ? u.series[index].label : ""; }],
        },
      },
      data,
      this.body,
    );
    this.plot.over.addEventListener("dblclick", () => this.range && this.zoom(null));
    stats.live += 1;
    stats.created += 1;
    this.el.dataset.state = "drawn";
  }

  selected(u) {
    const { left, width } = u.select;
    if (width < 4) return;
    const range = stepRange(this.histories, u.posToVal(left, "x"), u.posToVal(left + width, "x"));
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    if (range) this.zoom(range);
  }

  resize() {
    this.plot?.setSize({ width: Math.max(200, this.el.clientWidth - 16), height: PLOT_HEIGHT });
  }

  destroyPlot() {
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
      stats.live -= 1;
    }
  }

  destroy() {
    this.abort?.abort();
    this.destroyPlot();
  }
}

// ---------------------------------------------------------------- a grid of charts, virtualized

// Cards for `keys` (each a metric key), overlaying `runs`. Placeholders are added in batches as the
// grid scrolls; a card fetches and draws when it comes into view and is destroyed when it leaves.
export function chartGrid(runs, keys, { emptyText = "No metrics." } = {}) {
  const grid = h("div.chart-grid");
  const count = h("span.muted");
  const sentinel = h("div.sentinel");
  const charts = new Map(); // card element -> MetricChart while in view
  let shownKeys = keys;
  let added = 0;

  const visibility = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        const card = entry.target;
        if (entry.isIntersecting && !charts.has(card)) {
          const chart = new MetricChart(card, card.dataset.key, runs);
          charts.set(card, chart);
          chart.load();
        } else if (!entry.isIntersecting && charts.has(card)) {
          charts.get(card).destroy();
          charts.delete(card);
          card.dataset.state = "placeholder";
        }
      }
    },
    { rootMargin: "200px 0px" },
  );

  const more = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) addBatch();
  }, { rootMargin: "400px 0px" });

  function placeholder(key) {
    return h("div.chart-card", { dataset: { key, state: "placeholder" } }, h("div.chart-title", {}, h("span.key", {}, key)));
  }

  function addBatch() {
    const batch = shownKeys.slice(added, added + CARDS_PER_BATCH).map(placeholder);
    added += batch.length;
    grid.append(...batch);
    batch.forEach((card) => visibility.observe(card));
    sentinel.hidden = added >= shownKeys.length;
    // Observing anew reports whether the sentinel is still in view, which asks for the next batch.
    more.unobserve(sentinel);
    if (!sentinel.hidden) more.observe(sentinel);
  }

  function reset(filterText) {
    for (const chart of charts.values()) chart.destroy();
    charts.clear();
    visibility.disconnect();
    const needle = filterText.toLowerCase();
    shownKeys = needle ? keys.filter((k) => k.toLowerCase().includes(needle)) : keys;
    count.textContent = `${shownKeys.length} of ${keys.length} metrics`;
    added = 0;
    clear(grid);
    if (!shownKeys.length) grid.append(h("div.empty", {}, keys.length ? "No metric matches." : emptyText));
    addBatch();
  }

  const redraw = () => charts.forEach((chart) => chart.draw());
  settings.listeners.add(redraw);
  const resizer = new ResizeObserver(() => charts.forEach((chart) => chart.resize()));
  resizer.observe(grid);

  const root = h(
    "div.charts",
    {},
    h("div.toolbar", {},
      h("input.search", { type: "search", placeholder: "Filter metrics", name: "metric-filter", oninput: (e) => reset(e.target.value) }),
      count),
    settingsBar(),
    grid,
    sentinel,
  );
  reset("");
  // Called by the router when the view goes away.
  root.dispose = () => {
    settings.listeners.delete(redraw);
    visibility.disconnect();
    more.disconnect();
    resizer.disconnect();
    charts.forEach((chart) => chart.destroy());
    charts.clear();
  };
  return root;
}
