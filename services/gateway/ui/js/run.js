// A run's page: overview (info, notes, params, latest metrics, tags, datasets), charts of every
// metric (virtualized), and the artifact browser.
import { getRun, setRunTag } from "./api.js";
import { artifactBrowser } from "./artifacts.js";
import { chartGrid } from "./charts.js";
import { clear, color, errorBox, filteredKeyValueTable, formatDuration, formatTime, formatValue, h, metricValue, runName, toMap } from "./dom.js";

const NOTE_TAG = "mlflow.note.content";
const TABS = [["overview", "Overview"], ["charts", "Charts"], ["artifacts", "Artifacts"]];

function notes(run) {
  let text = toMap(run.data?.tags)[NOTE_TAG] || "";
  const shown = h("div.note-text", {}, text || h("span.muted", {}, "No notes."));
  const editor = h("textarea", { rows: 6, name: "note" });
  const error = h("div");
  const box = h("section.card.notes", {}, h("h3", {}, "Notes ", h("button.small", { onclick: () => edit(true) }, "Edit")), shown, error);
  const form = h("div", {}, editor, h("button", { onclick: () => save() }, "Save"), h("button", { onclick: () => edit(false) }, "Cancel"));

  function edit(on) {
    if (on) {
      editor.value = text;
      shown.replaceWith(form);
    } else form.replaceWith(shown);
  }

  async function save() {
    try {
      await setRunTag(run.info.run_id, NOTE_TAG, editor.value);
      text = editor.value;
      clear(shown, text || h("span.muted", {}, "No notes."));
      clear(error);
      edit(false);
    } catch (e) {
      clear(error, errorBox(e));
    }
  }
  return box;
}

function overview(run) {
  const info = run.info;
  const tags = toMap(run.data?.tags);
  const metrics = (run.data?.metrics || []).map((m) => [m.key, m]).sort((a, b) => a[0].localeCompare(b[0]));
  const fields = [
    ["Run ID", info.run_id],
    ["Experiment", h("a", { href: `#/experiments/${info.experiment_id}` }, info.experiment_id)],
    ["Status", h(`span.status.${String(info.status).toLowerCase()}`, {}, info.status)],
    ["Started", formatTime(info.start_time)],
    ["Ended", formatTime(info.end_time)],
    ["Duration", formatDuration(info.start_time, info.end_time)],
    ["User", info.user_id],
    ["Source", tags["mlflow.source.name"] || ""],
    ["Git commit", tags["mlflow.source.git.commit"] || ""],
    ["Artifact URI", info.artifact_uri],
    ["Lifecycle", info.lifecycle_stage],
  ];
  const datasets = run.inputs?.dataset_inputs || [];
  return h(
    "div.overview",
    {},
    h("section.card", {}, h("table.grid.kv", {}, fields.map(([k, v]) => h("tr", {}, h("td.key", {}, k), h("td", {}, v))))),
    notes(run),
    filteredKeyValueTable("Parameters", (run.data?.params || []).map((p) => [p.key, p.value]).sort((a, b) => a[0].localeCompare(b[0]))),
    filteredKeyValueTable("Metrics", metrics, (m, key) => [
      h("a", { href: `#/runs/${info.run_id}?tab=charts&metric=${encodeURIComponent(key)}` }, formatValue(metricValue(m))),
      h("span.muted", {}, ` step ${m.step ?? 0}`),
    ]),
    filteredKeyValueTable("Tags", Object.entries(tags).filter(([k]) => k !== NOTE_TAG).sort((a, b) => a[0].localeCompare(b[0]))),
    datasets.length
      ? h("section.card", {}, h("h3", {}, "Datasets"), h("ul", {}, datasets.map((d) =>
        h("li", {}, d.dataset?.name, " ", h("span.muted", {}, `(${d.dataset?.digest}) ${(d.tags || []).map((t) => `${t.key}=${t.value}`).join(", ")}`)))))
      : null,
  );
}

export function runView(runId, params) {
  const tab = params.get("tab") || "overview";
  const content = h("div", {}, h("p.muted", {}, "loading…"));
  const root = h("div.run", {}, content);
  getRun(runId).then(
    ({ run }) => {
      const tabs = h("nav.tabs", {}, TABS.map(([id, label]) =>
        h(`a${id === tab ? ".active" : ""}`, { href: `#/runs/${runId}${id === "overview" ? "" : `?tab=${id}`}` }, label)));
      let body;
      if (tab === "charts") {
        const keys = (run.data?.metrics || []).map((m) => m.key).sort();
        const focus = params.get("metric");
        body = chartGrid([{ id: runId, name: runName(run), color: color(0) }], focus ? [focus, ...keys.filter((k) => k !== focus)] : keys);
        root.dispose = body.dispose;
      } else if (tab === "artifacts") body = artifactBrowser(run);
      else body = overview(run);
      clear(content,
        h("h2", {}, runName(run), " ", h("span.muted", {}, "in experiment ", h("a", { href: `#/experiments/${run.info.experiment_id}` }, run.info.experiment_id))),
        tabs, body);
    },
    (error) => clear(content, errorBox(error)),
  );
  return root;
}
