// The UI's entry point: hash routes to views. Each view is a function returning an element;
// an element may carry dispose() to stop what it started (observers, charts) when left.
import { currentUser } from "./api.js";
import { compareView } from "./compare.js";
import { h } from "./dom.js";
import { experimentsView } from "./experiments.js";
import { modelsView, modelView, versionView } from "./registry.js";
import { runView } from "./run.js";
import { experimentView } from "./runs.js";

const ROUTES = [
  [/^\/?$/, () => experimentsView()],
  [/^\/experiments\/([^/]+)$/, (params, id) => experimentView(id, params)],
  [/^\/runs\/([^/]+)$/, (params, id) => runView(id, params)],
  // MLflow's links (the mlflow client prints them): #/experiments/<id>/runs/<run id>
  [/^\/experiments\/[^/]+\/runs\/([^/]+)$/, (params, id) => runView(id, params)],
  [/^\/compare$/, (params) => compareView(params)],
  [/^\/models$/, () => modelsView()],
  [/^\/models\/([^/]+)$/, (params, name) => modelView(name)],
  [/^\/models\/([^/]+)\/versions\/([^/]+)$/, (params, name, version) => versionView(name, version)],
];

const main = document.getElementById("app");
let current = null;

function route() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  current?.dispose?.();
  let view = h("div", {}, h("h2", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Experiments")));
  for (const [pattern, make] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      view = make(params, ...match.slice(1).map(decodeURIComponent));
      break;
    }
  }
  current = view;
  main.replaceChildren(view);
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", path.startsWith("/models") === link.getAttribute("href").startsWith("#/models"));
  }
  window.scrollTo(0, 0);
}

// The signed-in user, with a way out; nothing when auth is off (an anonymous admin, without an id).
currentUser().then((user) => {
  if (!user.id) return;
  document.querySelector("header .username").textContent = user.username;
  document.querySelector("header .user").hidden = false;
}, () => {});

window.addEventListener("hashchange", route);
route();
