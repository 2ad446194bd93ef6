// An experiment's page: the runs table (chosen columns, server-side sorting and filtering, pages
// fetched as it scrolls, only the visible rows rendered), run selection, and charts of the selection.
import { getExperiment, searchRuns } from "./api.js";
import { chartGrid } from "./charts.js";
import { clear, color, errorBox, formatDuration, formatTime, formatValue, h, metricMap, metricValue, runName, toMap } from "./dom.js";
import { permissionsPanel } from "./permissions.js";

const ROW_HEIGHT = 30; // px, fixed so that the visible rows can be computed
const OVERSCAN = 10;
const PAGE_SIZE = 500;
const MAX_CHART_RUNS = 100;

const BASE_COLUMNS = [
  { id: "name", label: "Run", sort: "attributes.run_name" },
  { id: "start", label: "Created", sort: "attributes.start_time" },
  { id: "duration", label: "Duration" },
  { id: "status", label: "Status", sort: "attributes.status" },
  { id: "user", label: "User", sort: "attributes.user_id" },
];
const PREFIX = { metric: "metrics", param: "params", tag: "tags" };

const sortKey = (column) => column.sort || `${PREFIX[column.type]}.\`${column.key}\``;

function cell(run, column) {
  switch (column.id) {
    case "name":
      return h("a", { href: `#/runs/${run.info.run_id}` }, runName(run));
    case "start":
      return formatTime(run.info.start_time);
    case "duration":
      return formatDuration(run.info.start_time, run.info.end_time);
    case "status":
      return h(`span.status.${String(run.info.status).toLowerCase()}`, {}, run.info.status);
    case "user":
      return run.info.user_id;
  }
  if (column.type === "metric") {
    const metric = metricMap(run)[column.key];
    return metric ? formatValue(metricValue(metric)) : "";
  }
  return (column.type === "param" ? toMap(run.data?.params) : toMap(run.data?.tags))[column.key] ?? "";
}

function savedColumns(experimentId) {
  try {
    return JSON.parse(localStorage.getItem(`mlgrid.columns.${experimentId}`));
  } catch {
    return null;
  }
}

export function experimentView(experimentId, params) {
  const state = {
    filter: params.get("filter") || "",
    orderBy: params.get("order") || "attributes.start_time DESC",
    view: params.get("view") || "table",
    runs: [],
    nextPageToken: "",
    loading: false,
    selected: new Set(),
    columns: savedColumns(experimentId),
    generation: 0,
  };
  const title = h("h2", {}, "Experiment ", experimentId);
  const message = h("div");
  const summary = h("span.muted.run-count");
  const compareButton = h("button", { disabled: true, onclick: () => { location.hash = `#/compare?runs=${[...state.selected].join(",")}`; } }, "Compare");
  const viewButton = h("button", { onclick: () => setView(state.view === "table" ? "charts" : "table") });
  const filterInput = h("input.filter", {
    type: "search", name: "filter", value: state.filter, size: 60,
    placeholder: "metrics.rmse < 1 and params.model = 'tree'",
    onkeydown: (e) => e.key === "Enter" && applyFilter(),
  });
  const columnChooser = h("details.columns", {}, h("summary", {}, "Columns"));
  const head = h("thead");
  const body = h("tbody");
  const scroller = h("div.table-scroll", { onscroll: () => renderRows() }, h("table.grid.runs", {}, head, body));
  const more = h("button", { hidden: true, onclick: () => loadPage() }, "Load more");
  const tableView = h("div", {}, scroller, more);
  const chartsView = h("div");
  const root = h(
    "div.experiment",
    {},
    title,
    h("div.toolbar", {}, filterInput, h("button", { onclick: () => applyFilter() }, "Search"), columnChooser, compareButton, viewButton,
      permissionsPanel("experiment", experimentId), summary),
    message,
    tableView,
    chartsView,
  );

  function updateHash() {
    const q = new URLSearchParams();
    if (state.filter) q.set("filter", state.filter);
    if (state.orderBy !== "attributes.start_time DESC") q.set("order", state.orderBy);
    if (state.view !== "table") q.set("view", state.view);
    const query = q.toString();
    history.replaceState(null, "", `#/experiments/${experimentId}${query ? `?${query}` : ""}`);
  }

  function applyFilter() {
    state.filter = filterInput.value.trim();
    reload();
  }

  function columns() {
    return [...BASE_COLUMNS, ...(state.columns || [])];
  }

  // Default columns: the first few metrics and params of what has loaded.
  function defaultColumns() {
    const keys = allKeys();
    return [...keys.metric.slice(0, 4).map((key) => ({ type: "metric", key })), ...keys.param.slice(0, 4).map((key) => ({ type: "param", key }))];
  }

  function allKeys() {
    const keys = { metric: new Set(), param: new Set(), tag: new Set() };
    for (const run of state.runs) {
      (run.data?.metrics || []).forEach((m) => keys.metric.add(m.key));
      (run.data?.params || []).forEach((p) => keys.param.add(p.key));
      (run.data?.tags || []).forEach((t) => keys.tag.add(t.key));
    }
    return Object.fromEntries(Object.entries(keys).map(([type, set]) => [type, [...set].sort()]));
  }

  function renderColumnChooser() {
    const keys = allKeys();
    const chosen = new Set((state.columns || []).map((c) => `${c.type}:${c.key}`));
    const toggle = (type, key, on) => {
      const rest = (state.columns || []).filter((c) => !(c.type === type && c.key === key));
      state.columns = on ? [...rest, { type, key }] : rest;
      localStorage.setItem(`mlgrid.columns.${experimentId}`, JSON.stringify(state.columns));
      renderHead();
      renderRows(true);
    };
    clear(
      columnChooser,
      h("summary", {}, "Columns"),
      h("div.column-list", {},
        Object.entries(keys).map(([type, list]) => [
          h("h4", {}, PREFIX[type]),
          list.slice(0, 500).map((key) =>
            h("label", {}, h("input", { type: "checkbox", checked: chosen.has(`${type}:${key}`), onchange: (e) => toggle(type, key, e.target.checked) }), ` ${key}`)),
        ])),
    );
  }

  function renderHead() {
    const [field, direction] = state.orderBy.split(/ (?=ASC$|DESC$)/);
    const allBox = h("input", {
      type: "checkbox", title: "Select all loaded runs",
      checked: state.runs.length > 0 && state.selected.size === state.runs.length,
      onchange: (e) => {
        state.selected = new Set(e.target.checked ? state.runs.map((r) => r.info.run_id) : []);
        selectionChanged();
      },
    });
    clear(head, h("tr", {}, h("th.select", {}, allBox), columns().map((column) => {
      const key = column.sort || (column.type && sortKey(column));
      const label = column.label || [h("span.kind", {}, column.type[0].toUpperCase()), " ", column.key];
      if (!key) return h("th", {}, label);
      const active = field === key;
      return h("th.sortable", {
        class: active ? `sortable sorted ${direction === "ASC" ? "asc" : "desc"}` : "sortable",
        dataset: { sort: key },
        onclick: () => {
          state.orderBy = `${key} ${active && direction === "DESC" ? "ASC" : "DESC"}`;
          reload();
        },
      }, label, active ? (direction === "ASC" ? " ▲" : " ▼") : "");
    })));
  }

  // Only the rows in view (and a few around) exist in the DOM; spacer rows keep the scroll height.
  let lastRange = "";
  function renderRows(force = false) {
    const total = state.runs.length;
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(total, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    const range = `${first}:${last}:${total}`;
    if (!force && range === lastRange) return;
    lastRange = range;
    const cols = columns();
    const rows = state.runs.slice(first, last).map((run) => {
      const id = run.info.run_id;
      return h("tr", { dataset: { runId: id }, class: state.selected.has(id) ? "selected" : "" },
        h("td.select", {}, h("input", {
          type: "checkbox", checked: state.selected.has(id),
          onchange: (e) => {
            e.target.checked ? state.selected.add(id) : state.selected.delete(id);
            e.target.closest("tr").classList.toggle("selected", e.target.checked);
            selectionChanged();
          },
        })),
        cols.map((column) => h("td", {}, cell(run, column))));
    });
    const spacer = (height) => (height > 0 ? h("tr.spacer", {}, h("td", { colspan: cols.length + 1, style: `height:${height}px` })) : null);
    clear(body, spacer(first * ROW_HEIGHT), rows, spacer((total - last) * ROW_HEIGHT));
    if (state.nextPageToken && last >= total - OVERSCAN && !state.loading) loadPage();
  }

  function selectionChanged() {
    compareButton.disabled = state.selected.size < 1;
    compareButton.textContent = `Compare${state.selected.size ? ` (${state.selected.size})` : ""}`;
    if (state.view === "charts") renderCharts();
  }

  function setView(view) {
    state.view = view;
    updateHash();
    tableView.hidden = view !== "table";
    viewButton.textContent = view === "table" ? "Charts" : "Table";
    if (view === "charts") renderCharts();
    else clearCharts();
  }

  function clearCharts() {
    chartsView.firstChild?.dispose?.();
    clear(chartsView);
  }

  // Charts of the selected runs (or of the first runs shown), every metric key they have.
  function renderCharts() {
    clearCharts();
    const picked = state.selected.size ? state.runs.filter((r) => state.selected.has(r.info.run_id)) : state.runs.slice(0, 10);
    const runs = picked.slice(0, MAX_CHART_RUNS).map((run, i) => ({ id: run.info.run_id, name: runName(run), color: color(i) }));
    const keys = [...new Set(picked.flatMap((run) => (run.data?.metrics || []).map((m) => m.key)))].sort();
    chartsView.append(
      h("p.muted", {}, state.selected.size ? `${runs.length} selected runs` : `The first ${runs.length} runs (select runs to choose)`),
      chartGrid(runs, keys),
    );
  }

  async function loadPage() {
    const generation = state.generation;
    state.loading = true;
    more.disabled = true;
    try {
      const page = await searchRuns({
        experimentIds: [experimentId], filter: state.filter, orderBy: state.orderBy,
        pageToken: state.nextPageToken, maxResults: PAGE_SIZE,
      });
      if (generation !== state.generation) return;
      state.runs.push(...(page.runs || []));
      state.nextPageToken = page.next_page_token || "";
      clear(message);
    } catch (error) {
      if (generation !== state.generation) return;
      state.nextPageToken = "";
      clear(message, errorBox(error));
    } finally {
      if (generation === state.generation) state.loading = false;
      more.disabled = false;
    }
    if (!state.columns) state.columns = defaultColumns();
    more.hidden = !state.nextPageToken;
    summary.textContent = `${state.runs.length}${state.nextPageToken ? "+" : ""} runs`;
    renderColumnChooser();
    renderHead();
    renderRows(true);
    if (state.view === "charts") renderCharts();
  }

  function reload() {
    state.generation += 1;
    state.runs = [];
    state.nextPageToken = "";
    state.loading = false;
    state.selected.clear();
    selectionChanged();
    scroller.scrollTop = 0;
    updateHash();
    loadPage();
  }

  getExperiment(experimentId).then(
    ({ experiment }) => clear(title, experiment.name, " ", h("span.muted", {}, `#${experiment.experiment_id}`)),
    (error) => clear(message, errorBox(error)),
  );
  setView(state.view);
  reload();
  root.dispose = clearCharts;
  return root;
}
