// The experiments list.
import { searchExperiments } from "./api.js";
import { clear, errorBox, formatTime, h, table, toMap } from "./dom.js";

export function experimentsView() {
  let experiments = [];
  let token = "";
  let viewType = "ACTIVE_ONLY";
  const message = h("div", {}, h("p.muted", {}, "loading…"));
  const list = table(["Name", "ID", "Created", "Last modified", "Tags"], []);
  const body = list.querySelector("tbody");
  const more = h("button", { hidden: true, onclick: () => load(false) }, "Load more");
  const search = h("input.filter", { type: "search", name: "experiment-filter", placeholder: "Filter by name", oninput: () => render() });

  function render() {
    const needle = search.value.trim().toLowerCase();
    const shown = needle ? experiments.filter((e) => e.name.toLowerCase().includes(needle)) : experiments;
    clear(body, shown.map((e) => h("tr", { dataset: { experimentId: e.experiment_id } },
      h("td", {}, h("a", { href: `#/experiments/${e.experiment_id}` }, e.name)),
      h("td", {}, e.experiment_id),
      h("td", {}, formatTime(e.creation_time)),
      h("td", {}, formatTime(e.last_update_time)),
      h("td", {}, Object.entries(toMap(e.tags)).filter(([k]) => !k.startsWith("mlflow.")).map(([k, v]) => h("span.chip", {}, `${k}: ${v}`))))));
  }

  async function load(fresh) {
    if (fresh) {
      experiments = [];
      token = "";
    }
    try {
      const page = await searchExperiments({ viewType, pageToken: token });
      experiments.push(...(page.experiments || []));
      token = page.next_page_token || "";
      more.hidden = !token;
      clear(message, experiments.length ? null : h("p.muted", {}, "No experiments."));
      render();
    } catch (error) {
      clear(message, errorBox(error));
    }
  }

  load(true);
  return h("div.experiments", {},
    h("h2", {}, "Experiments"),
    h("div.toolbar", {}, search,
      h("select", { name: "view-type", onchange: (e) => { viewType = e.target.value; load(true); } },
        [["ACTIVE_ONLY", "Active"], ["DELETED_ONLY", "Deleted"], ["ALL", "All"]].map(([value, label]) => h("option", { value }, label)))),
    message, list, more);
}
