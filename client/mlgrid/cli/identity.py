"""`mlgrid users|permissions|roles|tokens`: identity and permissions, over mlgrid.identity.IdentityClient.

Every command signs in as the other client commands do (MLGRID_TRACKING_TOKEN, or MLGRID_TRACKING_USERNAME
and MLGRID_TRACKING_PASSWORD). Passwords are read with --password or prompted for without echo, never
printed; a token's secret is printed once, when it is created.
"""
from __future__ import annotations

import dataclasses
import datetime
import json

import click

from mlgrid.cli.common import format_time, print_table, tracking_uri_option
from mlgrid.client import MlgridClient
from mlgrid.entities import RolePermission
from mlgrid.exceptions import MlgridException
from mlgrid.identity import DEFAULT_WORKSPACE, NEVER, PERMISSIONS, RESOURCE_TYPES, IdentityClient, parse_expiry

PASSWORD_HELP = ("at least 12 characters; prompted for without echo when not given (better: a password on the "
                 "command line stays in the shell's history)")

resource_type_option = click.option(
    "--resource-type", required=True, type=click.Choice(RESOURCE_TYPES),
    help="What the grant is on: experiments and registered models by id (or *); the other types by * only.",
)
permission_option = click.option("--permission", required=True, type=click.Choice(PERMISSIONS, case_sensitive=False),
                                 help="READ < USE < EDIT < MANAGE; DENY overrides any grant.")
role_id_option = click.option("--role-id", required=True, type=int)
role_permission_id_option = click.option("--permission-id", "role_permission_id", required=True, type=int,
                                         help="The role permission's id (roles list-permissions).")


def _identity(tracking_uri: str | None) -> IdentityClient:
    return MlgridClient(tracking_uri).identity


def _print_json(entity) -> None:
    click.echo(json.dumps(dataclasses.asdict(entity), indent=4))


def _new_password(password: str | None, prompt: str) -> str:
    if password is not None:
        return password
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


def _grants(grants: list[RolePermission]) -> str:
    return ", ".join(f"{g.permission} on {g.resource_type} {g.resource_pattern}" for g in grants)


class Expiry(click.ParamType):
    """A token's lifetime: 30d, 12h, 90m, 45s, 2w or never (None)."""

    name = "duration"

    def convert(self, value, param, ctx) -> datetime.timedelta | None:
        if value is None or isinstance(value, datetime.timedelta):
            return value
        try:
            seconds = parse_expiry(value)
        except MlgridException as error:
            self.fail(error.message, param, ctx)
        return datetime.timedelta(seconds=seconds) if seconds else None


# ---------------------------------------------------------------- users


@click.group()
def users() -> None:
    """Create, list, change and delete users.

    Admins manage users; anyone signed in sees who they are and changes their own password."""


@users.command("create")
@click.option("-u", "--username", required=True)
@click.option("--password", default=None, help=f"The user's password: {PASSWORD_HELP}.")
@tracking_uri_option
def create_user(username, password, tracking_uri) -> None:
    """Create a user (admins only)."""
    user = _identity(tracking_uri).create_user(username, _new_password(password, f"Password for {username}"))
    click.echo(f"Created user {user.username!r} with id {user.id}")


@users.command("get")
@click.option("-u", "--username", required=True)
@tracking_uri_option
def get_user(username, tracking_uri) -> None:
    """Print a user as JSON (yourself, or anyone for admins)."""
    _print_json(_identity(tracking_uri).get_user(username))


@users.command("list")
@tracking_uri_option
def list_users(tracking_uri) -> None:
    """List users, with the roles of those you may see them of."""
    rows = [[u.id, u.username, "yes" if u.is_admin else "", ", ".join(r.name for r in u.roles if not r.is_user_role)]
            for u in _identity(tracking_uri).list_users()]
    print_table(["Id", "Username", "Admin", "Roles"], rows)


@users.command("current")
@tracking_uri_option
def current_user(tracking_uri) -> None:
    """Print who the credentials sign in as."""
    user = _identity(tracking_uri).get_current_user()
    click.echo(f"Signed in as {user.username}" + (" (admin)" if user.is_admin else ""))


@users.command("update-password")
@click.option("-u", "--username", default=None, help="Whose password [default: yours]; another's needs an admin.")
@click.option("--password", default=None, help=f"The new password: {PASSWORD_HELP}.")
@click.option("--current-password", default=None,
              help="Your current password, to change your own; prompted for without echo when not given.")
@tracking_uri_option
def update_password(username, password, current_password, tracking_uri) -> None:
    """Change your own password (giving the current one), or another user's (admins)."""
    identity = _identity(tracking_uri)
    me = identity.get_current_user().username
    username = username or me
    if username == me and current_password is None:
        current_password = click.prompt("Current password", hide_input=True)
    new_password = _new_password(password, f"New password for {username}")
    identity.update_user_password(username, new_password, current_password if username == me else None)
    click.echo(f"Password of {username!r} updated" + ("; sign in with the new one from now on" if username == me else ""))


@users.command("update-admin")
@click.option("-u", "--username", required=True)
@click.option("--admin/--no-admin", "is_admin", default=None, help="Make the user an admin, or no longer one.")
@tracking_uri_option
def update_admin(username, is_admin, tracking_uri) -> None:
    """Make a user an admin (who may do everything), or no longer one (admins only)."""
    if is_admin is None:
        raise click.UsageError("give --admin or --no-admin")
    _identity(tracking_uri).update_user_admin(username, is_admin)
    click.echo(f"{username!r} is {'now' if is_admin else 'no longer'} an admin")


@users.command("delete")
@click.option("-u", "--username", required=True)
@tracking_uri_option
def delete_user(username, tracking_uri) -> None:
    """Delete a user, with their grants and tokens (admins only; not yourself)."""
    _identity(tracking_uri).delete_user(username)
    click.echo(f"User {username!r} deleted")


# ---------------------------------------------------------------- per-user grants


@click.group()
def permissions() -> None:
    """Grant, revoke and list users' permissions.

    Permissions on experiments, registered models and the other resource types, granted to one user."""


@permissions.command("grant")
@click.option("--user", "username", required=True)
@resource_type_option
@click.option("--resource-id", required=True, help="An experiment id, a registered model's name, or *.")
@permission_option
@tracking_uri_option
def grant_permission(username, resource_type, resource_id, permission, tracking_uri) -> None:
    """Grant a user a permission on a resource (needs MANAGE on it; on *, an admin); replaces an earlier grant."""
    _identity(tracking_uri).grant_user_permission(username, resource_type, resource_id, permission)
    click.echo(f"Granted {permission} on {resource_type} {resource_id} to {username!r}")


@permissions.command("revoke")
@click.option("--user", "username", required=True)
@resource_type_option
@click.option("--resource-id", required=True, help="An experiment id, a registered model's name, or *.")
@tracking_uri_option
def revoke_permission(username, resource_type, resource_id, tracking_uri) -> None:
    """Revoke a user's direct grant on a resource (what roles give stays)."""
    _identity(tracking_uri).revoke_user_permission(username, resource_type, resource_id)
    click.echo(f"Revoked the grant of {username!r} on {resource_type} {resource_id}")


@permissions.command("get")
@click.option("--user", "username", default=None, help="Whose permission [default: yours].")
@resource_type_option
@click.option("--resource-id", required=True, help="An experiment id or a registered model's name.")
@tracking_uri_option
def get_permission(username, resource_type, resource_id, tracking_uri) -> None:
    """Print a user's effective permission on a resource: their grants, roles and the default together."""
    identity = _identity(tracking_uri)
    username = username or identity.get_current_user().username
    found = identity.get_user_permission(username, resource_type, resource_id)
    click.echo(f"{username} has {found.permission} on {resource_type} {resource_id}")


@permissions.command("list")
@click.option("--user", "username", default=None, help="Whose grants [default: yours].")
@tracking_uri_option
def list_permissions(username, tracking_uri) -> None:
    """List a user's grants, direct and through roles."""
    identity = _identity(tracking_uri)
    found = identity.list_user_permissions(username) if username else identity.list_current_user_permissions()
    if found.is_admin:
        click.echo(f"{username or 'You'} {'is' if username else 'are'} an admin: every permission on everything.")
    rows = [[p.resource_type, p.resource_pattern, p.permission, "direct" if p.is_direct else f"role {p.role_name}"]
            for p in found.permissions]
    print_table(["Resource Type", "Resource", "Permission", "Granted"], rows)


# ---------------------------------------------------------------- roles


@click.group()
def roles() -> None:
    """Manage roles: named sets of grants, assigned to users.

    A role grants permissions on resource patterns to every user it is assigned to; admins manage roles."""


@roles.command("create")
@click.option("-n", "--name", required=True)
@click.option("--workspace", default=DEFAULT_WORKSPACE, show_default=True)
@click.option("--description", default=None)
@tracking_uri_option
def create_role(name, workspace, description, tracking_uri) -> None:
    """Create a role (without grants: add them with add-permission)."""
    role = _identity(tracking_uri).create_role(workspace, name, description)
    click.echo(f"Created role {role.name!r} with id {role.id}")


@roles.command("get")
@role_id_option
@tracking_uri_option
def get_role(role_id, tracking_uri) -> None:
    """Print a role and its grants as JSON."""
    _print_json(_identity(tracking_uri).get_role(role_id))


@roles.command("list")
@click.option("--workspace", default=None, help="Only this workspace's roles [default: every workspace; admins only].")
@click.option("--user", "username", default=None, help="Only the roles assigned to this user.")
@tracking_uri_option
def list_roles(workspace, username, tracking_uri) -> None:
    """List roles with their grants."""
    identity = _identity(tracking_uri)
    found = identity.list_user_roles(username) if username else identity.list_roles(workspace)
    rows = [[r.id, r.name, r.workspace, r.description or "", _grants(r.permissions)]
            for r in found if not (workspace and r.workspace != workspace)]
    print_table(["Id", "Name", "Workspace", "Description", "Permissions"], rows)


@roles.command("update")
@role_id_option
@click.option("-n", "--name", default=None, help="A new name.")
@click.option("--description", default=None, help="A new description.")
@tracking_uri_option
def update_role(role_id, name, description, tracking_uri) -> None:
    """Rename a role or change its description."""
    if name is None and description is None:
        raise click.UsageError("give --name, --description or both")
    role = _identity(tracking_uri).update_role(role_id, name, description)
    click.echo(f"Role {role.id} updated: {role.name!r}" + (f", {role.description!r}" if role.description else ""))


@roles.command("delete")
@role_id_option
@tracking_uri_option
def delete_role(role_id, tracking_uri) -> None:
    """Delete a role: its grants and assignments go with it."""
    _identity(tracking_uri).delete_role(role_id)
    click.echo(f"Role {role_id} deleted")


@roles.command("add-permission")
@role_id_option
@resource_type_option
@click.option("--resource-pattern", required=True, help="An experiment id, a registered model's name, or *.")
@permission_option
@tracking_uri_option
def add_role_permission(role_id, resource_type, resource_pattern, permission, tracking_uri) -> None:
    """Add a grant to a role."""
    grant = _identity(tracking_uri).add_role_permission(role_id, resource_type, resource_pattern, permission)
    click.echo(f"Added permission {grant.id} to role {role_id}: {_grants([grant])}")


@roles.command("remove-permission")
@role_permission_id_option
@tracking_uri_option
def remove_role_permission(role_permission_id, tracking_uri) -> None:
    """Remove a grant from its role."""
    _identity(tracking_uri).remove_role_permission(role_permission_id)
    click.echo(f"Permission {role_permission_id} removed")


@roles.command("update-permission")
@role_permission_id_option
@permission_option
@tracking_uri_option
def update_role_permission(role_permission_id, permission, tracking_uri) -> None:
    """Change the permission of a role's grant."""
    grant = _identity(tracking_uri).update_role_permission(role_permission_id, permission)
    click.echo(f"Permission {grant.id} of role {grant.role_id}: {_grants([grant])}")


@roles.command("list-permissions")
@role_id_option
@tracking_uri_option
def list_role_permissions(role_id, tracking_uri) -> None:
    """List a role's grants."""
    rows = [[g.id, g.resource_type, g.resource_pattern, g.permission]
            for g in _identity(tracking_uri).list_role_permissions(role_id)]
    print_table(["Id", "Resource Type", "Resource Pattern", "Permission"], rows)


@roles.command("assign")
@role_id_option
@click.option("--user", "username", required=True)
@tracking_uri_option
def assign_role(role_id, username, tracking_uri) -> None:
    """Assign a role to a user: they hold its grants."""
    _identity(tracking_uri).assign_role(username, role_id)
    click.echo(f"Role {role_id} assigned to {username!r}")


@roles.command("unassign")
@role_id_option
@click.option("--user", "username", required=True)
@tracking_uri_option
def unassign_role(role_id, username, tracking_uri) -> None:
    """Take a role from a user."""
    _identity(tracking_uri).unassign_role(username, role_id)
    click.echo(f"Role {role_id} unassigned from {username!r}")


@roles.command("list-users")
@role_id_option
@tracking_uri_option
def list_role_users(role_id, tracking_uri) -> None:
    """List the users a role is assigned to."""
    identity = _identity(tracking_uri)
    assignments = identity.list_role_users(role_id)
    names = {u.id: u.username for u in identity.list_users()} if assignments else {}
    print_table(["User Id", "Username"], [[a.user_id, names.get(a.user_id, "")] for a in assignments])


# ---------------------------------------------------------------- access tokens


@click.group()
def tokens() -> None:
    """Create, list and revoke access tokens.

    A token signs in without a password: MLGRID_TRACKING_TOKEN for the mlgrid client and CLI,
    MLFLOW_TRACKING_TOKEN for the stock mlflow client."""


@tokens.command("create")
@click.option("-n", "--name", required=True, help="Its name, e.g. what uses it (ci); unique among your tokens.")
@click.option("--expires", type=Expiry(), default="30d", show_default=True,
              help=f"How long it is valid: 30d, 12h, 90m, 2w... or {NEVER}.")
@click.option("--user", "username", default=None, help="Whose token [default: yours]; another's needs an admin.")
@click.option("--secret-only", is_flag=True, help="Print only the secret, for scripts: "
              "export MLGRID_TRACKING_TOKEN=$(mlgrid tokens create -n ci --secret-only).")
@tracking_uri_option
def create_token(name, expires, username, secret_only, tracking_uri) -> None:
    """Create an access token and print its secret, this once."""
    token = _identity(tracking_uri).create_access_token(name, expires, username)
    if secret_only:
        click.echo(token.secret)
        return
    until = f"expires {format_time(token.expires_ms)}" if token.expires_ms else "never expires"
    owner = f" of {username!r}" if username else ""
    click.echo(f"Created access token {token.name!r}{owner} (id {token.id}); it {until}.\n"
               "Its secret is shown only this once (mlgrid keeps just a hash of it). Sign in with it:\n\n"
               f"  export MLGRID_TRACKING_TOKEN={token.secret}   # the mlgrid client and CLI\n"
               f"  export MLFLOW_TRACKING_TOKEN={token.secret}   # the stock mlflow client")


@tokens.command("list")
@click.option("--user", "username", default=None, help="Whose tokens [default: yours]; another's needs an admin.")
@tracking_uri_option
def list_tokens(username, tracking_uri) -> None:
    """List access tokens that are not revoked (expired ones too, to revoke them)."""
    now_ms = datetime.datetime.now().timestamp() * 1000

    def expiry(ms: int | None) -> str:
        return NEVER if not ms else format_time(ms) + (" (expired)" if ms <= now_ms else "")

    rows = [[t.id, t.name, format_time(t.created_ms), expiry(t.expires_ms), format_time(t.last_used_ms) or NEVER]
            for t in _identity(tracking_uri).list_access_tokens(username)]
    print_table(["Id", "Name", "Created", "Expires", "Last Used"], rows)


@tokens.command("revoke")
@click.option("-n", "--name", default=None, help="The token's name.")
@click.option("--id", "token_id", type=int, default=None, help="Instead of --name: its id.")
@click.option("--user", "username", default=None, help="Whose token [default: yours]; another's needs an admin.")
@tracking_uri_option
def revoke_token(name, token_id, username, tracking_uri) -> None:
    """Revoke an access token: it stops working within the servers' cache time (MLGRID_AUTH_CACHE_SECONDS)."""
    if (name is None) == (token_id is None):
        raise click.UsageError("give one of --name and --id")
    _identity(tracking_uri).revoke_access_token(name, token_id, username)
    click.echo(f"Access token {name if name is not None else token_id!r} revoked")


GROUPS = (users, permissions, roles, tokens)
