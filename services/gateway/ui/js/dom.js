// Small DOM and formatting helpers shared by the views.

// h("a.link", {href: "#/"}, "text", child...): an element with attributes, properties and children.
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && key !== "list" && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function formatTime(ms) {
  if (ms === undefined || ms === null || ms === "") return "";
  const d = new Date(Number(ms));
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatDuration(startMs, endMs) {
  if (!startMs || !endMs) return "";
  let s = Math.max(0, (Number(endMs) - Number(startMs)) / 1000);
  if (s < 60) return `${s.toFixed(1)}s`;
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.slice(0, 2).join(" ");
}

export function formatValue(value) {
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 1e-3 && Math.abs(value) < 1e6 ? String(Number(value.toPrecision(6))) : value.toExponential(4);
  }
  return value === undefined || value === null ? "" : String(value);
}

export function formatBytes(n) {
  n = Number(n || 0);
  for (const unit of ["B", "KiB", "MiB", "GiB"]) {
    if (n < 1024 || unit === "GiB") return unit === "B" ? `${n} B` : `${n.toFixed(1)} ${unit}`;
    n /= 1024;
  }
  return "";
}

// MLflow lists key/value pairs ([{key, value}]); the views want maps.
export const toMap = (pairs) => Object.fromEntries((pairs || []).map((p) => [p.key, p.value]));

// A metric's value: MLflow's JSON writes NaN and infinities as strings, and may leave out a 0.
export function metricValue(metric) {
  const value = metric.value ?? 0;
  if (typeof value === "number") return value;
  return { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity }[value] ?? Number(value);
}

export function metricMap(run) {
  return Object.fromEntries((run.data?.metrics || []).map((m) => [m.key, m]));
}

export function runName(run) {
  return run.info.run_name || toMap(run.data?.tags)["mlflow.runName"] || run.info.run_id.slice(0, 8);
}

export function errorBox(error) {
  return h("div.error", {}, error.code ? `${error.code}: ` : "", error.message || String(error));
}

export function table(headers, rows, attrs = {}) {
  return h(
    "table.grid",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows),
  );
}

// A filter box over a list of [key, value] rows: shows the rows whose key or value contains the text.
export function filteredKeyValueTable(title, pairs, render = (v) => v) {
  const body = h("tbody");
  const count = h("span.muted");
  const show = (text) => {
    const needle = text.toLowerCase();
    const rows = pairs.filter(([k, v]) => !needle || k.toLowerCase().includes(needle) || String(v).toLowerCase().includes(needle));
    clear(body, rows.slice(0, 2000).map(([k, v]) => h("tr", {}, h("td.key", {}, k), h("td", {}, render(v, k)))));
    count.textContent = `${rows.length} of ${pairs.length}`;
  };
  show("");
  return h(
    "section.card",
    {},
    h("h3", {}, title, " ", count),
    pairs.length > 10 ? h("input.search", { type: "search", placeholder: `Filter ${title.toLowerCase()}`, oninput: (e) => show(e.target.value) }) : null,
    h("table.grid.kv", {}, body),
  );
}

// Distinct colors for many overlaid runs: a fixed palette, then golden-angle hues.
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
export const color = (i) => (i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360} 65% 45%)`);
