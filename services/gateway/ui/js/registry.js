// The model registry: registered models, a model's versions (stages, aliases, tags, source run),
// and one version.
import { getModelVersion, getRegisteredModel, searchModelVersions, searchRegisteredModels } from "./api.js";
import { clear, errorBox, formatTime, h, table, toMap } from "./dom.js";
import { permissionsPanel } from "./permissions.js";

const modelHref = (name) => `#/models/${encodeURIComponent(name)}`;
const versionHref = (name, version) => `${modelHref(name)}/versions/${version}`;
const chips = (items) => items.map((item) => h("span.chip", {}, item));
const tagChips = (tags) => chips(Object.entries(toMap(tags)).map(([k, v]) => `${k}: ${v}`));

export function modelsView() {
  let token = "";
  let filter = "";
  const more = h("button", { hidden: true, onclick: () => load(false) }, "Load more");
  const models = table(["Name", "Latest versions", "Aliases", "Tags", "Last modified"], []);
  const body = models.querySelector("tbody");
  const message = h("div", {}, h("p.muted", {}, "loading…"));
  const search = h("input.filter", { type: "search", name: "model-filter", placeholder: "Filter by name", onkeydown: (e) => {
    if (e.key === "Enter") {
      filter = e.target.value.trim() ? `name ILIKE '%${e.target.value.trim().replaceAll("'", "\\'")}%'` : "";
      load(true);
    }
  } });

  async function load(fresh) {
    if (fresh) token = "";
    try {
      const page = await searchRegisteredModels({ filter, pageToken: token });
      const rows = (page.registered_models || []).map((m) =>
        h("tr", {},
          h("td", {}, h("a", { href: modelHref(m.name) }, m.name)),
          h("td", {}, (m.latest_versions || []).map((v) => h("a.chip", { href: versionHref(m.name, v.version) }, `v${v.version}${v.current_stage && v.current_stage !== "None" ? ` ${v.current_stage}` : ""}`))),
          h("td", {}, chips((m.aliases || []).map((a) => `@${a.alias} → v${a.version}`))),
          h("td", {}, tagChips(m.tags)),
          h("td", {}, formatTime(m.last_updated_timestamp))));
      if (fresh) clear(body);
      body.append(...rows);
      token = page.next_page_token || "";
      more.hidden = !token;
      clear(message, body.children.length ? null : h("p.muted", {}, "No registered models."));
    } catch (error) {
      clear(message, errorBox(error));
    }
  }
  load(true);
  return h("div.models", {}, h("h2", {}, "Registered models"), h("div.toolbar", {}, search), message, models, more);
}

export function modelView(name) {
  const content = h("div", {}, h("p.muted", {}, "loading…"));
  Promise.all([getRegisteredModel(name), searchModelVersions(name)]).then(
    ([{ registered_model: model }, { model_versions: versions = [] }]) => {
      const aliasesOf = {};
      for (const a of model.aliases || []) (aliasesOf[a.version] ||= []).push(a.alias);
      versions.sort((a, b) => Number(b.version) - Number(a.version));
      clear(content,
        model.description ? h("p", {}, model.description) : null,
        h("p", {}, "Created ", formatTime(model.creation_timestamp), ", last modified ", formatTime(model.last_updated_timestamp)),
        h("section.card", {}, h("h3", {}, "Aliases"), (model.aliases || []).length
          ? chips(model.aliases.map((a) => `@${a.alias} → v${a.version}`)) : h("span.muted", {}, "none")),
        h("section.card", {}, h("h3", {}, "Tags"), (model.tags || []).length ? tagChips(model.tags) : h("span.muted", {}, "none")),
        h("section.card", {}, h("h3", {}, "Versions"), table(
          ["Version", "Stage", "Aliases", "Status", "Source run", "Created", "Tags"],
          versions.map((v) => h("tr", { dataset: { version: v.version } },
            h("td", {}, h("a", { href: versionHref(name, v.version) }, `Version ${v.version}`)),
            h("td", {}, v.current_stage || "None"),
            h("td", {}, chips((aliasesOf[v.version] || v.aliases || []).map((a) => `@${a}`))),
            h("td", {}, v.status || ""),
            h("td", {}, v.run_id ? h("a", { href: `#/runs/${v.run_id}` }, v.run_id.slice(0, 12)) : ""),
            h("td", {}, formatTime(v.creation_timestamp)),
            h("td", {}, tagChips(v.tags)))),
        )));
    },
    (error) => clear(content, errorBox(error)),
  );
  return h("div.model", {}, h("h2", {}, h("a", { href: "#/models" }, "Models"), " / ", name),
    h("div.toolbar", {}, permissionsPanel("registered_model", name)), content);
}

export function versionView(name, version) {
  const content = h("div", {}, h("p.muted", {}, "loading…"));
  getModelVersion(name, version).then(
    ({ model_version: v }) => clear(content, h("section.card", {}, h("table.grid.kv", {}, [
      ["Stage", v.current_stage || "None"],
      ["Aliases", chips((v.aliases || []).map((a) => `@${a}`))],
      ["Status", v.status || ""],
      ["Source run", v.run_id ? h("a", { href: `#/runs/${v.run_id}` }, v.run_id) : ""],
      ["Source", v.source || ""],
      ["Created", formatTime(v.creation_timestamp)],
      ["Last modified", formatTime(v.last_updated_timestamp)],
      ["Description", v.description || ""],
      ["Tags", tagChips(v.tags)],
    ].map(([k, val]) => h("tr", {}, h("td.key", {}, k), h("td", {}, val)))))),
    (error) => clear(content, errorBox(error)),
  );
  return h("div.version", {}, h("h2", {}, h("a", { href: "#/models" }, "Models"), " / ", h("a", { href: modelHref(name) }, name), ` / Version ${version}`), content);
}
