"""Secrets stay in Secrets; existing Secrets are referenced; the hook Jobs find what they need when they run."""
import base64

import pytest
from click import Argument

from chartlib import (  # noqa: F401 (objects: a fixture)
    FULLNAME, component_of, container_env, hook_events, hook_weight, objects, of_kind, one, pod_spec, rendered, requires_helm,
    VALUE_SETS,
)
from mlgrid.cli.main import cli

pytestmark = requires_helm

# The secret strings the value sets give, which must appear in Secrets only.
SECRETS = ["db-s3cret-pw", "s3-s3cret-access-key", "pg-s3cret-pw", "minio-s3cret-pw", "admin-s3cret-pw", "oidc-s3cret-pw"]


def secret_refs(pod: dict) -> set[str]:
    names = set()
    for container in pod["containers"]:
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    return names


def config_map_refs(pod: dict) -> set[str]:
    return {s["configMapRef"]["name"] for c in pod["containers"] for s in c.get("envFrom", []) if "configMapRef" in s}


def decoded(secret: dict) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_secrets_appear_only_in_secrets(objects):
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = repr(obj)
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, f"{obj['kind']} {obj['metadata']['name']} holds {leaked}"
    for config_map in of_kind(objects, "ConfigMap").values():
        for key in config_map["data"]:
            assert not any(word in key for word in ("PASSWORD", "SECRET", "ACCESS_KEY", "STORE_URI")), key


@pytest.mark.parametrize("value_set", ["external-literal", "ingress-tls"])
def test_given_secrets_are_in_the_release_secret(value_set):
    """...or, the admin's password, in the auth Secret."""
    secrets = of_kind(rendered(value_set), "Secret")
    data = {**decoded(secrets[FULLNAME]), **decoded(secrets[f"{FULLNAME}-auth"])}
    given = [s for s in SECRETS if s in repr(VALUE_SETS[value_set])]
    assert given and all(any(s in v for v in data.values()) for s in given)


def test_bundled_database_url_uses_the_bundled_password():
    data = decoded(one(rendered("ingress-tls"), "Secret", FULLNAME))
    assert data["database-url"] == f"postgresql://mlgrid:pg-s3cret-pw@{FULLNAME}-postgresql:5432/mlgrid"
    assert data["postgresql-password"] == "pg-s3cret-pw"
    assert data["s3-access-key-id"] == "mlgrid" and data["s3-secret-access-key"] == "minio-s3cret-pw"


def test_generated_passwords_are_the_same_everywhere_in_one_render():
    objects = rendered("defaults")
    release, hooks = decoded(one(objects, "Secret", FULLNAME)), decoded(one(objects, "Secret", f"{FULLNAME}-hooks"))
    assert release == hooks
    assert f":{release['postgresql-password']}@" in release["database-url"] and len(release["postgresql-password"]) == 24


def test_existing_secrets_are_referenced_not_copied():
    objects = rendered("external")
    assert not of_kind(objects, "Secret")
    refs = {}
    for workload in [*of_kind(objects, "Deployment").values(), *of_kind(objects, "Job").values()]:
        for container in pod_spec(workload)["containers"]:
            for entry in container.get("env", []):
                if "secretKeyRef" in entry.get("valueFrom", {}):
                    ref = entry["valueFrom"]["secretKeyRef"]
                    refs[entry["name"]] = (ref["name"], ref["key"])
    assert refs == {
        "MLGRID_BACKEND_STORE_URI": ("team-db", "url"),
        "MLGRID_S3_ACCESS_KEY_ID": ("team-s3", "access-key-id"), "MLGRID_S3_SECRET_ACCESS_KEY": ("team-s3", "secret-access-key"),
        "S3_ACCESS_KEY_ID": ("team-s3", "access-key-id"), "S3_SECRET_ACCESS_KEY": ("team-s3", "secret-access-key"),
        "MLGRID_ADMIN_USERNAME": ("team-auth", "user"), "MLGRID_ADMIN_PASSWORD": ("team-auth", "password"),
    }
    artifacts = one(objects, "ConfigMap", f"{FULLNAME}-artifacts")["data"]
    assert artifacts["MLGRID_ARTIFACTS_DESTINATION"] == "s3://ml-artifacts/mlgrid"
    assert artifacts["MLGRID_S3_ENDPOINT_URL"] == "https://s3.storage.example:9000" and artifacts["MLGRID_S3_REGION"] == "eu-west-1"


def test_the_migration_job_runs_mlgrid_db_upgrade(objects):
    job = one(objects, "Job", f"{FULLNAME}-migrations")
    (container,) = pod_spec(job)["containers"]
    assert container["command"] == ["mlgrid"] and container["args"] == ["db", "upgrade", "$(MLGRID_BACKEND_STORE_URI)"]
    # Kubernetes expands $(VAR) from the container's env; `mlgrid db upgrade` takes the URI as its one argument.
    assert "MLGRID_BACKEND_STORE_URI" in {e["name"] for e in container["env"]}
    upgrade = cli.commands["db"].commands["upgrade"]
    assert [(p.name, isinstance(p, Argument)) for p in upgrade.params] == [("uri", True)]


@pytest.mark.parametrize("value_set, migrations", [
    ("defaults", {"post-install", "pre-upgrade"}),
    ("external", {"pre-install", "pre-upgrade"}),
])
def test_hooks_run_when_their_store_exists(value_set, migrations):
    """The bundled PostgreSQL is the release's own object, made after pre-install hooks."""
    objects = rendered(value_set)
    assert hook_events(one(objects, "Job", f"{FULLNAME}-migrations")) == migrations
    if value_set == "external":  # an external S3's bucket is made before anything uses it
        assert hook_events(one(objects, "Job", f"{FULLNAME}-bucket")) == {"pre-install", "pre-upgrade"}


def test_install_can_wait_for_every_pod():
    """`helm install --wait` waits for the pods before post-install hooks run: no pod may need one. With the
    bundled stores, the artifact service makes its bucket and the registry waits for the schema tracking makes."""
    objects = rendered("defaults")
    assert f"{FULLNAME}-bucket" not in of_kind(objects, "Job")
    env = {}
    for deployment in of_kind(objects, "Deployment").values():
        (container,) = pod_spec(deployment)["containers"]
        env[component_of(deployment)] = {name: entry.get("value") for name, entry in container_env(objects, container).items()}
    assert env["artifacts"]["MLGRID_S3_CREATE_BUCKET"] == "true"
    assert env["registry"]["MLGRID_DB_AUTO_INIT"] == "false" and env["tracking"]["MLGRID_DB_AUTO_INIT"] == "true"
    assert all(int(env[name]["MLGRID_STARTUP_WAIT_SECONDS"]) > 0 for name in ("tracking", "registry", "artifacts"))


def test_hook_jobs_use_only_what_exists_when_they_run(objects):
    """Hooks run before (pre-*) or after (post-*) the release's objects: a hook Job's Secrets and ConfigMaps are
    hooks of the same event with a lower weight, objects the chart does not make (existing ones), or, in post-*
    events only, the release's own."""
    hooks = {(o["kind"], o["metadata"]["name"]): o for o in objects if hook_events(o)}
    own = {(o["kind"], o["metadata"]["name"]) for o in objects if not hook_events(o)}
    jobs = [o for o in hooks.values() if o["kind"] == "Job"]
    assert jobs
    for job in jobs:
        pod = pod_spec(job)
        assert "serviceAccountName" not in pod  # the release's ServiceAccount is not there before install
        needed = [("Secret", name) for name in secret_refs(pod)] + [("ConfigMap", name) for name in config_map_refs(pod)]
        for event in hook_events(job):
            for key in needed:
                if key in hooks:
                    assert event in hook_events(hooks[key]) and hook_weight(hooks[key]) < hook_weight(job), (job["metadata"]["name"], event, key)
                else:
                    assert key not in own or event.startswith("post-"), (job["metadata"]["name"], event, key)


def test_hook_objects_are_replaced_and_cleaned_up(objects):
    for obj in objects:
        if hook_events(obj):
            policy = set(obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(","))
            assert policy == {"before-hook-creation", "hook-succeeded"}
