// Compare selected runs: params, latest metrics and tags side by side (rows that differ
// highlighted), and every metric overlaid on one chart per key.
import { searchRuns } from "./api.js";
import { chartGrid } from "./charts.js";
import { clear, color, errorBox, formatValue, h, metricMap, metricValue, runName, toMap } from "./dom.js";

function sideBySide(title, runs, valuesOf, onlyDiffs) {
  const maps = runs.map(valuesOf);
  const keys = [...new Set(maps.flatMap((m) => Object.keys(m)))].sort();
  const rows = [];
  for (const key of keys) {
    const values = maps.map((m) => (key in m ? formatValue(m[key]) : undefined));
    const differs = new Set(values.map(String)).size > 1;
    if (onlyDiffs && !differs) continue;
    rows.push(h(`tr${differs ? ".diff" : ""}`, { dataset: { key } }, h("td.key", {}, key), values.map((v) => h("td", {}, v ?? h("span.muted", {}, "—")))));
  }
  return h("section.card", {}, h("h3", {}, title, " ", h("span.muted", {}, `${rows.length} of ${keys.length}`)),
    h("div.table-wide", {}, h("table.grid.compare", {},
      h("thead", {}, h("tr", {}, h("th", {}, ""), runs.map((run, i) =>
        h("th", {}, h("span.swatch", { style: `background:${color(i)}` }), h("a", { href: `#/runs/${run.info.run_id}` }, runName(run)))))),
      h("tbody", {}, rows))));
}

export function compareView(params) {
  const ids = (params.get("runs") || "").split(",").filter(Boolean);
  const content = h("div", {}, h("p.muted", {}, "loading…"));
  const root = h("div.compare", {}, h("h2", {}, `Comparing ${ids.length} runs`), content);
  let onlyDiffs = false;
  // One search for every run (in any experiment), shown in the order of the link.
  const quoted = ids.map((id) => `'${id.replace(/[^0-9a-zA-Z]/g, "")}'`).join(",");
  searchRuns({ experimentIds: [], filter: `attributes.run_id IN (${quoted})`, maxResults: Math.max(1, ids.length), viewType: "ALL" }).then(
    ({ runs: found = [] }) => {
      const byId = new Map(found.map((run) => [run.info.run_id, run]));
      const runs = ids.filter((id) => byId.has(id)).map((id) => byId.get(id));
      const tables = h("div");
      const renderTables = () => clear(tables,
        sideBySide("Parameters", runs, (run) => toMap(run.data?.params), onlyDiffs),
        sideBySide("Metrics (latest)", runs, (run) => Object.fromEntries(Object.entries(metricMap(run)).map(([k, m]) => [k, metricValue(m)])), onlyDiffs),
        sideBySide("Tags", runs, (run) => Object.fromEntries(Object.entries(toMap(run.data?.tags)).filter(([k]) => !k.startsWith("mlflow."))), onlyDiffs));
      renderTables();
      const keys = [...new Set(runs.flatMap((run) => (run.data?.metrics || []).map((m) => m.key)))].sort();
      const charts = chartGrid(runs.map((run, i) => ({ id: run.info.run_id, name: runName(run), color: color(i) })), keys);
      root.dispose = charts.dispose;
      clear(content,
        h("label", {}, h("input", { type: "checkbox", name: "only-diffs", onchange: (e) => { onlyDiffs = e.target.checked; renderTables(); } }), " Only differences"),
        tables, h("h3", {}, "Metrics"), charts);
    },
    (error) => clear(content, errorBox(error)),
  );
  return root;
}
