// The "Permissions" panel of an experiment's or a registered model's page: the users' grants on it, and
// granting and revoking, for whoever holds MANAGE on it (hidden from others, and when auth is off).
import { currentUser, grantPermission, listResourcePermissions, revokePermission } from "./api.js";
import { clear, errorBox, h } from "./dom.js";

const PERMISSIONS = ["READ", "USE", "EDIT", "MANAGE", "DENY"];

export function permissionsPanel(resourceType, resourceId) {
  const list = h("tbody");
  const message = h("div");
  const username = h("input", { name: "grant-username", placeholder: "username", required: true });
  const permission = h("select", { name: "grant-permission" }, PERMISSIONS.map((p) => h("option", { value: p }, p)));
  const panel = h("details.permissions", { hidden: true },
    h("summary", {}, "Permissions"),
    h("div.permission-list", {},
      h("table.grid", {}, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Permission"), h("th", {}, ""))), list),
      h("form.grant", { onsubmit: (e) => { e.preventDefault(); grant(); } }, username, permission, h("button", { type: "submit" }, "Grant")),
      message));
  let grants = [];

  function render() {
    clear(list, grants.length ? grants.map((g) => h("tr", { dataset: { username: g.username } },
      h("td", {}, g.username),
      h("td.permission", {}, g.permission),
      h("td", {}, h("button.small", { onclick: () => change(() => revokePermission(g.username, resourceType, resourceId)) }, "Revoke"))))
      : h("tr", {}, h("td.muted", { colspan: 3 }, "No grants.")));
  }

  async function load() {
    const answer = await listResourcePermissions(resourceType, resourceId);
    grants = answer.permissions || [];
    render();
  }

  async function change(action) {
    try {
      await action();
      clear(message);
      await load();
    } catch (error) {
      clear(message, errorBox(error));
    }
  }

  // A user holds one direct grant per resource: granting to a user who has one replaces it.
  function grant() {
    const name = username.value.trim();
    if (!name) return;
    change(async () => {
      if (grants.some((g) => g.username === name)) await revokePermission(name, resourceType, resourceId);
      await grantPermission(name, resourceType, resourceId, permission.value);
      username.value = "";
    });
  }

  currentUser().then(async (user) => {
    if (!user.id) return; // auth off: an anonymous admin, nobody to grant to
    try {
      await load();
      panel.hidden = false;
    } catch {
      // PERMISSION_DENIED: not a manager of it
    }
  }, () => {});
  return panel;
}
