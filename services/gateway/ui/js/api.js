// MLflow's REST API as the UI speaks it (the ajax-api prefix, like MLflow's own UI).
const AJAX = "ajax-api/2.0/mlflow";
const ARTIFACTS = "api/2.0/mlflow-artifacts/artifacts";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(key, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function call(method, path, params = {}, signal) {
  const init = { method, headers: { Accept: "application/json" }, signal };
  let url = path;
  if (method === "GET") url += query(params);
  else {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(params);
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let body = {};
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = { message: text.slice(0, 300) };
  }
  if (response.status === 401) signIn();
  if (!response.ok) throw new ApiError(response.status, body.error_code, body.message);
  return body;
}

// Not signed in (or the session ended): to the sign-in page, which brings the browser back here.
function signIn() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`);
}

const get = (path, params, signal) => call("GET", `${AJAX}/${path}`, params, signal);
const post = (path, body, signal) => call("POST", `${AJAX}/${path}`, body, signal);

export const searchExperiments = ({ filter, viewType, pageToken, maxResults = 1000 } = {}) =>
  post("experiments/search", {
    max_results: maxResults,
    filter: filter || undefined,
    view_type: viewType || "ACTIVE_ONLY",
    page_token: pageToken || undefined,
    order_by: ["last_update_time DESC"],
  });

export const getExperiment = (experimentId) => get("experiments/get", { experiment_id: experimentId });

export const searchRuns = ({ experimentIds, filter, orderBy, pageToken, maxResults = 500, viewType }) =>
  post("runs/search", {
    experiment_ids: experimentIds,
    filter: filter || "",
    order_by: orderBy ? [orderBy] : [],
    max_results: maxResults,
    page_token: pageToken || undefined,
    run_view_type: viewType || "ACTIVE_ONLY",
  });

export const getRun = (runId) => get("runs/get", { run_id: runId });

export const setRunTag = (runId, key, value) => post("runs/set-tag", { run_id: runId, key, value });

// One metric of up to 100 runs, downsampled by the server (peaks and dips kept); a step range zooms in.
export const getHistoryBulkInterval = ({ runIds, key, maxResults, startStep, endStep }, signal) =>
  get(
    "metrics/get-history-bulk-interval",
    { run_ids: runIds, metric_key: key, max_results: maxResults, start_step: startStep, end_step: endStep },
    signal,
  );

export const searchRegisteredModels = ({ filter, pageToken, maxResults = 100 } = {}) =>
  get("registered-models/search", { filter, page_token: pageToken, max_results: maxResults });

export const getRegisteredModel = (name) => get("registered-models/get", { name });

export const searchModelVersions = (name) =>
  get("model-versions/search", { filter: `name='${name.replaceAll("'", "\\'")}'`, max_results: 1000 });

export const getModelVersion = (name, version) => get("model-versions/get", { name, version });

// Artifacts go through the artifact proxy, addressed by the run's location under the artifact root
// ("mlflow-artifacts:/1/<run>/artifacts" and "mlgrid-artifacts:/1/<run>/artifacts" both give "1/<run>/artifacts").
export function artifactRoot(artifactUri) {
  const match = /^[a-z][a-z0-9+.-]*-artifacts:\/*(.*)$/.exec(artifactUri || "");
  return match ? match[1].replace(/\/+$/, "") : null;
}

export const listArtifacts = (root, path) =>
  call("GET", ARTIFACTS, { path: path ? `${root}/${path}` : root });

export const artifactUrl = (root, path) =>
  `${ARTIFACTS}/${`${root}/${path}`.split("/").map(encodeURIComponent).join("/")}`;

// Who is signed in: {user: {id, username, is_admin}}; with auth off, an anonymous admin without an id.
let me = null;
export const currentUser = () => (me ||= get("users/current").then((r) => r.user || {}));

// The users' direct grants on one experiment or registered model (needs MANAGE on it), and changing them.
export const listResourcePermissions = (resourceType, resourceId) =>
  call("GET", "ajax-api/2.0/mlgrid/permissions/resource", { resource_type: resourceType, resource_id: resourceId });

export const grantPermission = (username, resourceType, resourceId, permission) =>
  call("POST", "ajax-api/3.0/mlflow/users/permissions/grant",
    { username, resource_type: resourceType, resource_id: resourceId, permission });

export const revokePermission = (username, resourceType, resourceId) =>
  call("POST", "ajax-api/3.0/mlflow/users/permissions/revoke", { username, resource_type: resourceType, resource_id: resourceId });
