"""The identity store on SQLite and PostgreSQL: users and passwords (argon2id, never the password), access
tokens (expiry, revocation, last use), grants and roles with MLflow 3.17's resolution (DENY, the default
permission, the creator's MANAGE, runs and logged models following their experiment), and the search
filter, held to permission() on a grid of users and resources."""
import itertools
import uuid

import pytest
from conftest import unique
from sqlalchemy import select, update

from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.db.schema import access_tokens, experiments, logged_models, registered_models, runs, users
from services.identity.model import Identity, Permission
from services.identity.store import LAST_USED_EVERY_MS, IdentityStore
from services.identity.tokens import digest

P = Permission
PASSWORD = "correct horse battery staple"


@pytest.fixture
def identity(store):
    """An IdentityStore (default READ) on the tracking store's database, each backend."""
    return IdentityStore(store.engine, Permission.READ)


async def new_user(identity, admin=False) -> Identity:
    user = await identity.create_user(unique("user"), PASSWORD, is_admin=admin)
    return Identity(user.username, user.id, user.is_admin)


async def new_experiment(store) -> str:
    return await store.create_experiment(unique("exp"), "", {})


async def new_run(store, experiment_id: str) -> str:
    return (await store.create_run(experiment_id, "u", None, [], "r")).info.run_id


# ------------------------------------------------------------------ users and passwords


async def test_a_password_is_stored_as_argon2id_and_verifies(identity):
    user = await identity.create_user(unique("ada"), PASSWORD)
    async with identity.engine.connect() as conn:
        stored = (await conn.execute(select(users.c.password_hash).where(users.c.id == user.id))).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    found = await identity.verify_password(user.username, PASSWORD)
    assert found == Identity(user.username, user.id, False, "password")
    assert await identity.verify_password(user.username, PASSWORD + "!") is None
    assert await identity.verify_password(unique("nobody"), PASSWORD) is None


@pytest.mark.parametrize("password, message", [("", "cannot be empty"), ("short", "at least 12"), ("x" * 1025, "at most")])
async def test_bad_passwords_and_usernames_are_refused_and_nothing_stored(identity, password, message):
    name = unique("bad")
    with pytest.raises(InvalidArgument, match=message):
        await identity.create_user(name, password)
    with pytest.raises(NotFound, match=f"username={name} not found"):
        await identity.get_user(name)
    for username in ("", "a:b", " padded"):
        with pytest.raises(InvalidArgument, match="Username"):
            await identity.create_user(username, PASSWORD)


async def test_users_are_created_once_listed_updated_and_deleted(identity):
    user = await identity.create_user(unique("bob"), PASSWORD)
    with pytest.raises(AlreadyExists, match=f"username={user.username}"):
        await identity.create_user(user.username, PASSWORD + "2")
    assert await identity.get_user(user.username) == user
    assert user in await identity.list_users()
    await identity.update_password(user.username, "another long password")
    assert await identity.verify_password(user.username, PASSWORD) is None
    assert await identity.verify_password(user.username, "another long password") is not None
    await identity.update_admin(user.username, True)
    assert (await identity.get_user(user.username)).is_admin
    await identity.delete_user(user.username)
    with pytest.raises(NotFound):
        await identity.get_user(user.username)
    for call in (identity.update_password(user.username, PASSWORD), identity.update_admin(user.username, False),
                 identity.delete_user(user.username)):
        with pytest.raises(NotFound):
            await call


async def test_ensure_admin_creates_the_admin_once_and_never_changes_a_password(identity):
    name = unique("admin")
    await identity.ensure_admin(name, PASSWORD)
    assert (await identity.get_user(name)).is_admin
    await identity.ensure_admin(name, "a different password")
    assert await identity.verify_password(name, PASSWORD) is not None
    assert await identity.verify_password(name, "a different password") is None


async def test_oidc_users_are_created_without_a_password_and_follow_their_groups(identity):
    name = unique("oidc")
    first = await identity.oidc_user(name, is_admin=False)
    assert (first.username, first.is_admin, first.via) == (name, False, "oidc")
    assert not (await identity.get_user(name)).has_password
    assert await identity.verify_password(name, PASSWORD) is None
    again = await identity.oidc_user(name, is_admin=True)
    assert again.user_id == first.user_id and (await identity.get_user(name)).is_admin


# ------------------------------------------------------------------ tokens


async def test_a_token_verifies_until_revoked_and_only_its_hash_is_stored(identity):
    user = await new_user(identity)
    info, secret = await identity.create_token(user.user_id, "ci", None)
    assert secret.startswith("mlg_") and len(secret) > 40
    async with identity.engine.connect() as conn:
        stored = (await conn.execute(select(access_tokens.c.token_hash).where(access_tokens.c.id == info.id))).scalar()
    assert stored == digest(secret) and secret not in stored
    assert await identity.verify_token(secret) == Identity(user.username, user.user_id, False, "token")
    assert await identity.verify_token(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert [t.name for t in await identity.list_tokens(user.user_id)] == ["ci"]
    with pytest.raises(AlreadyExists, match="revoke it first"):
        await identity.create_token(user.user_id, "ci", None)
    await identity.revoke_token(user.user_id, "ci")
    assert await identity.verify_token(secret) is None
    assert await identity.list_tokens(user.user_id) == []
    with pytest.raises(NotFound):
        await identity.revoke_token(user.user_id, "ci")
    # The name is free again; revoking by id works too, and only for the token's owner.
    info, secret = await identity.create_token(user.user_id, "ci", None)
    other = await new_user(identity)
    with pytest.raises(NotFound):
        await identity.revoke_token(other.user_id, info.id)
    await identity.revoke_token(user.user_id, info.id)
    assert await identity.verify_token(secret) is None


async def test_an_expired_token_does_not_verify(identity):
    user = await new_user(identity)
    with pytest.raises(InvalidArgument, match="future"):
        await identity.create_token(user.user_id, "past", 1)
    info, secret = await identity.create_token(user.user_id, "soon", 2**62)
    assert await identity.verify_token(secret) is not None
    async with identity.engine.begin() as conn:
        await conn.execute(update(access_tokens).where(access_tokens.c.id == info.id).values(expires_ms=1000))
    assert await identity.verify_token(secret) is None


async def test_last_used_is_written_at_most_once_a_minute(identity):
    user = await new_user(identity)
    info, secret = await identity.create_token(user.user_id, "t", None)
    session, session_secret = await identity.create_token(user.user_id, "browser", None, kind="session")

    async def last_used(token_id):
        async with identity.engine.connect() as conn:
            return (await conn.execute(select(access_tokens.c.last_used_ms).where(access_tokens.c.id == token_id))).scalar()

    assert await last_used(info.id) is None
    await identity.verify_token(secret)
    first = await last_used(info.id)
    assert first is not None
    await identity.verify_token(secret)
    assert await last_used(info.id) == first  # within the minute: not written again
    async with identity.engine.begin() as conn:
        await conn.execute(update(access_tokens).where(access_tokens.c.id == info.id)
                           .values(last_used_ms=first - LAST_USED_EVERY_MS))
    await identity.verify_token(secret)
    assert await last_used(info.id) >= first
    assert (await identity.verify_token(session_secret)).via == "session"
    assert [t.name for t in await identity.list_tokens(user.user_id)] == ["t"]  # sessions are not listed as tokens


async def test_deleting_a_user_removes_their_tokens_roles_and_grants(identity, store):
    user = await new_user(identity)
    _, secret = await identity.create_token(user.user_id, "t", None)
    experiment = await new_experiment(store)
    await identity.grant(user.username, "experiment", experiment, "EDIT")
    role = await identity.create_role(unique("role"))
    await identity.assign_role(user.username, role.id)
    await identity.delete_user(user.username)
    assert await identity.verify_token(secret) is None
    assert await identity.list_role_users(role.id) == []
    assert not [r for r in await identity.list_roles() if r.name == f"__user_{user.user_id}__"]


# ------------------------------------------------------------------ grants and roles


async def test_grants_follow_mlflow_semantics(identity, store):
    user, experiment = await new_user(identity), await new_experiment(store)
    assert await identity.permission(user, "experiment", experiment) == P.READ  # the default
    await identity.grant(user.username, "experiment", experiment, "MANAGE")
    assert await identity.permission(user, "experiment", experiment) == P.MANAGE
    with pytest.raises(AlreadyExists):
        await identity.grant(user.username, "experiment", experiment, "READ")
    await identity.revoke(user.username, "experiment", experiment)
    assert await identity.permission(user, "experiment", experiment) == P.READ
    with pytest.raises(NotFound):
        await identity.revoke(user.username, "experiment", experiment)
    is_admin, listed = await identity.list_user_permissions(user.username)
    assert not is_admin and listed == []
    for bad, message in [(("nope", experiment, "READ"), "Invalid resource type"),
                         (("experiment", experiment, "NO_PERMISSIONS"), "accept only"),
                         (("experiment", experiment, "WRITE"), "Invalid permission"),
                         (("run", "abc", "READ"), "only wildcard"),
                         (("workspace", "*", "MANAGE"), "not supported")]:
        with pytest.raises(InvalidArgument, match=message):
            await identity.grant(user.username, *bad)
    with pytest.raises(NotFound, match="not found"):
        await identity.grant(unique("ghost"), "experiment", experiment, "READ")


async def test_deny_wins_over_every_grant_folded_with_it_and_is_never_floored(identity, store):
    user, experiment = await new_user(identity), await new_experiment(store)
    managers = await identity.create_role(unique("managers"))
    await identity.add_role_permission(managers.id, "experiment", "*", "MANAGE")
    await identity.assign_role(user.username, managers.id)
    assert await identity.permission(user, "experiment", experiment) == P.MANAGE
    await identity.grant(user.username, "experiment", experiment, "DENY")
    assert await identity.permission(user, "experiment", experiment) == P.DENY
    edit_default = IdentityStore(identity.engine, P.EDIT)
    assert await edit_default.permission(user, "experiment", experiment) == P.DENY
    assert await edit_default.permission(user, "experiment", await new_experiment(store)) == P.MANAGE
    # An admin is not restrictable.
    assert await identity.permission(Identity(user.username, user.user_id, True), "experiment", experiment) == P.MANAGE


async def test_a_positive_grant_is_floored_at_the_default_and_no_grant_is_the_default(identity, store):
    user, experiment = await new_user(identity), await new_experiment(store)
    await identity.grant(user.username, "experiment", experiment, "READ")
    assert await IdentityStore(identity.engine, P.EDIT).permission(user, "experiment", experiment) == P.EDIT
    closed = IdentityStore(identity.engine, P.NO_PERMISSIONS)
    assert await closed.permission(user, "experiment", experiment) == P.READ
    assert await closed.permission(user, "experiment", await new_experiment(store)) == P.NO_PERMISSIONS
    assert await closed.permission(Identity("anon", None), "experiment", experiment) == P.NO_PERMISSIONS


async def test_roles_crud_assignments_and_their_grants(identity):
    user = await new_user(identity)
    name = unique("team")
    role = await identity.create_role(name, description="the team")
    with pytest.raises(AlreadyExists):
        await identity.create_role(name)
    for bad in ("", "__user_7__", "__user_x"):
        with pytest.raises(InvalidArgument):
            await identity.create_role(bad)
    grant = await identity.add_role_permission(role.id, "registered_model", "fraud", "EDIT")
    with pytest.raises(AlreadyExists):
        await identity.add_role_permission(role.id, "registered_model", "fraud", "READ")
    with pytest.raises(InvalidArgument, match="Workspace-wide grants accept only"):
        await identity.add_role_permission(role.id, "workspace", "*", "READ")
    assert (await identity.get_role(role.id)).permissions == (grant,)
    updated = await identity.update_role_permission(grant.id, "MANAGE")
    assert updated.permission == "MANAGE" and await identity.list_role_permissions(role.id) == [updated]
    renamed = await identity.update_role(role.id, name=name + "-2")
    assert (renamed.name, renamed.description) == (name + "-2", "the team")
    assignment = await identity.assign_role(user.username, role.id)
    with pytest.raises(AlreadyExists):
        await identity.assign_role(user.username, role.id)
    assert await identity.list_role_users(role.id) == [assignment]
    assert [r.id for r in await identity.list_user_roles(user.username)] == [role.id]
    assert await identity.permission(user, "registered_model", "fraud") == P.MANAGE
    assert await identity.permission(user, "registered_model_version", "fraud") == P.MANAGE
    _, listed = await identity.list_user_permissions(user.username)
    assert [(p.role_name, p.resource_pattern, p.permission) for p in listed] == [(name + "-2", "fraud", "MANAGE")]
    await identity.unassign_role(user.username, role.id)
    assert await identity.permission(user, "registered_model", "fraud") == P.READ
    await identity.remove_role_permission(grant.id)
    await identity.delete_role(role.id)
    for call in (identity.get_role(role.id), identity.delete_role(role.id), identity.remove_role_permission(grant.id),
                 identity.unassign_role(user.username, role.id)):
        with pytest.raises(NotFound):
            await call


async def test_a_workspace_admin_role_gives_manage_everywhere(identity, store):
    user, experiment = await new_user(identity), await new_experiment(store)
    await identity.grant(user.username, "experiment", experiment, "DENY")
    admins = await identity.create_role(unique("admins"))
    await identity.add_role_permission(admins.id, "workspace", "*", "MANAGE")
    await identity.assign_role(user.username, admins.id)
    assert await identity.permission(user, "experiment", experiment) == P.MANAGE


async def test_the_creator_gets_manage(identity, store):
    user, experiment = await new_user(identity), await new_experiment(store)
    await identity.grant(user.username, "experiment", experiment, "READ")
    await identity.grant_creator(user, "experiment", experiment)  # replaces what they had
    await identity.grant_creator(user, "registered_model", "m-" + uuid.uuid4().hex)
    assert await identity.permission(user, "experiment", experiment) == P.MANAGE
    _, listed = await identity.list_user_permissions(user.username)
    assert {p.permission for p in listed} == {"MANAGE"} and len(listed) == 2


async def test_runs_and_logged_models_follow_their_experiment_with_the_tier_override(identity, store):
    user, experiment = await new_user(identity), await new_experiment(store)
    run = await new_run(store, experiment)
    model_id = "m-" + uuid.uuid4().hex
    async with identity.engine.begin() as conn:
        await conn.execute(logged_models.insert().values(
            model_id=model_id, experiment_id=int(experiment), name="m", status="READY", status_message="",
            model_type="", artifact_location="x", lifecycle_stage="active", creation_time=0, last_updated_time=0))
    await identity.grant(user.username, "experiment", experiment, "EDIT")
    assert await identity.permission(user, "run", run) == P.EDIT
    assert await identity.permission(user, "logged_model", model_id) == P.EDIT
    await identity.grant(user.username, "run", "*", "READ")  # the tier decides past READ on the experiment
    assert await identity.permission(user, "run", run) == P.READ
    assert await identity.permission(user, "logged_model", model_id) == P.EDIT
    await identity.revoke(user.username, "experiment", experiment)
    await identity.grant(user.username, "experiment", experiment, "DENY")  # no READ on the parent: nothing
    await identity.revoke(user.username, "run", "*")
    await identity.grant(user.username, "run", "*", "MANAGE")
    assert await identity.permission(user, "run", run) == P.DENY
    assert await identity.permission(user, "run", uuid.uuid4().hex) == P.NO_PERMISSIONS  # no such run
    assert await identity.permission(user, "run", "*") == P.MANAGE


# ------------------------------------------------------------------ the search filter


async def _grid(identity, store):
    """Experiments (each with a run), registered models, and users with every kind of grant on them."""
    exps = [await new_experiment(store) for _ in range(4)]
    run_of = {e: await new_run(store, e) for e in exps}
    models = [unique("model") for _ in range(3)]
    async with identity.engine.begin() as conn:
        for name in models:
            await conn.execute(registered_models.insert().values(
                name=name, description="", creation_time=0, last_updated_time=0, last_version=0))
    readers, deniers, admins = [await identity.create_role(unique(n)) for n in ("readers", "deniers", "wsadmins")]
    await identity.add_role_permission(readers.id, "experiment", "*", "READ")
    await identity.add_role_permission(readers.id, "registered_model", "*", "USE")
    await identity.add_role_permission(deniers.id, "experiment", exps[2], "DENY")
    await identity.add_role_permission(deniers.id, "registered_model", models[1], "DENY")
    await identity.add_role_permission(admins.id, "workspace", "*", "MANAGE")
    users_ = {}
    for label, grants, assigned in [
        ("plain", [], []),
        ("one", [("experiment", exps[0], "READ"), ("registered_model", models[0], "EDIT")], []),
        ("deny", [("experiment", exps[1], "DENY"), ("registered_model", models[2], "DENY")], []),
        ("roles", [], [readers, deniers]),
        ("role-and-own", [("experiment", exps[2], "MANAGE")], [deniers]),
        ("deny-all", [("experiment", "*", "DENY"), ("registered_model", "*", "DENY")], []),
        ("run-tier-deny", [("experiment", exps[0], "EDIT"), ("run", "*", "DENY")], []),
        ("version-tier-read", [("registered_model", models[0], "READ"), ("registered_model_version", "*", "READ")],
         []),
        ("ws-admin", [("experiment", exps[3], "DENY")], [admins]),
    ]:
        user = await new_user(identity)
        for grant in grants:
            await identity.grant(user.username, *grant)
        for role in assigned:
            await identity.assign_role(user.username, role.id)
        users_[label] = user
    users_["admin"] = await new_user(identity, admin=True)
    users_["anonymous"] = Identity("anonymous", None)
    return exps, run_of, models, users_


@pytest.mark.parametrize("default", [P.READ, P.NO_PERMISSIONS, P.EDIT])
async def test_readable_clause_keeps_exactly_the_rows_permission_allows_reading(store, default):
    identity = IdentityStore(store.engine, default)
    exps, run_of, models, grid_users = await _grid(identity, store)
    cases = [
        ("experiment", experiments, experiments.c.experiment_id, [int(e) for e in exps], lambda e: str(e)),
        ("run", runs, runs.c.experiment_id, [int(e) for e in exps], lambda e: run_of[str(e)]),
        ("registered_model", registered_models, registered_models.c.name, models, lambda m: m),
        ("registered_model_version", registered_models, registered_models.c.name, models, lambda m: m),
    ]
    for (label, user), (resource_type, table, column, ids, resource_id) in itertools.product(grid_users.items(), cases):
        expected = {i for i in ids if (await identity.permission(user, resource_type, resource_id(i))).allows(P.READ)}
        clause = identity.readable_clause(user, resource_type, column)
        query = select(column).where(column.in_(ids))
        async with identity.engine.connect() as conn:  # (SQLite: the engine's one connection, not held across)
            got = {row[0] for row in await conn.execute(query if clause is None else query.where(clause))}
        assert got == expected, (label, resource_type)
    assert identity.readable_clause(grid_users["admin"], "experiment", experiments.c.experiment_id) is None
