"""The kubernetes backend, as MLflow's: the project's docker_env image with the project copied in, pushed to
`repository-uri`, run as a Job rendered from `kube-job-template-path` in the cluster of `kube-context`."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import time
import uuid

import grpc

from mlgrid.client import MlgridClient
from mlgrid.projects import spec
from mlgrid.projects.environments import CONTAINER_PROJECT_DIR, check_docker_engine, docker_environment
from mlgrid.projects.spec import ExecutionException
from mlgrid.projects.submitted import SubmittedRun

REQUIRED_CONFIG_KEYS = ("repository-uri", "kube-job-template-path")
OPTIONAL_CONFIG_KEYS = ("kube-context",)  # without it: the in-cluster configuration
MAX_NAME_LENGTH = 63  # a DNS-1123 label
POLL_INTERVAL_S = 5


@dataclasses.dataclass(frozen=True)
class KubernetesConfig:
    repository_uri: str
    job_template: dict
    kube_context: str | None = None


def load_backend_config(path: str | None) -> KubernetesConfig:
    """Read and check the --backend-config JSON file and the Job template it names."""
    expected = f"a JSON object with {', '.join(REQUIRED_CONFIG_KEYS)} and optionally {', '.join(OPTIONAL_CONFIG_KEYS)}"
    if not path:
        raise ExecutionException(f"the kubernetes backend needs --backend-config FILE: {expected}")
    try:
        with open(path) as f:
            config = json.load(f)
    except OSError as error:
        raise ExecutionException(f"cannot read the backend config {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ExecutionException(f"backend config {path} is not valid JSON ({error}); expected {expected}") from None
    if not isinstance(config, dict):
        raise ExecutionException(f"backend config {path}: expected {expected}")
    missing = [key for key in REQUIRED_CONFIG_KEYS if not isinstance(config.get(key), str) or not config[key]]
    unknown = sorted(set(config) - set(REQUIRED_CONFIG_KEYS) - set(OPTIONAL_CONFIG_KEYS))
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise ExecutionException(f"backend config {path}: {'; '.join(problems)}; expected {expected}")
    template_path = os.path.join(os.path.dirname(os.path.abspath(path)), config["kube-job-template-path"])
    if not os.path.isfile(template_path):
        raise ExecutionException(f"backend config {path}: no Job template at {template_path}")
    return KubernetesConfig(config["repository-uri"], _job_template(template_path), config.get("kube-context"))


def _job_template(path: str) -> dict:
    template = spec.load_yaml(path)
    try:
        containers = template["spec"]["template"]["spec"]["containers"]
        is_job = template["kind"] == "Job" and isinstance(template.get("metadata", {}), dict) and containers[0]
    except (KeyError, IndexError, TypeError):
        is_job = False
    if not is_job:
        raise ExecutionException(f"{path}: expected a batch/v1 Job with spec.template.spec.containers")
    return template


def _name(project_name: str) -> str:
    """A unique Job name: the project's name as a DNS-1123 label, and a random suffix."""
    slug = re.sub(r"[^a-z0-9-]+", "-", project_name.lower()).strip("-") or "mlgrid-project"
    suffix = uuid.uuid4().hex[:8]
    return f"{slug[:MAX_NAME_LENGTH - len(suffix) - 1].rstrip('-')}-{suffix}"


def _project_digest(directory: str) -> str:
    """A hash of the project's files (not .git), to tag an image of a folder that is not a git checkout."""
    digest = hashlib.sha256()
    for folder, subfolders, names in sorted(os.walk(directory)):
        subfolders[:] = sorted(d for d in subfolders if d != ".git")
        for name in sorted(names):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, directory).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def build_and_push_image(project: spec.Project, repository_uri: str, git_commit: str | None) -> str:
    """Build the docker_env image with the project in it, push it to the repository, and return its URI."""
    check_docker_engine()
    image = f"{repository_uri}:{(git_commit or _project_digest(project.directory))[:12]}"
    dockerfile = f"FROM {project.docker_env.image}\nCOPY . {CONTAINER_PROJECT_DIR}/\nWORKDIR {CONTAINER_PROJECT_DIR}\n"
    for argv, stdin in ((["docker", "build", "-t", image, "-f", "-", project.directory], dockerfile), (["docker", "push", image], None)):
        if subprocess.run(argv, input=stdin, text=True).returncode != 0:
            raise ExecutionException(f"{' '.join(argv[:2])} of {image} failed", grpc.StatusCode.FAILED_PRECONDITION)
    return image


def render_job(
    template: dict, project: spec.Project, image: str, command: str, run_env: dict[str, str]
) -> dict:
    """The Job to submit: the template with a unique name, and its first container running `command` in `image`."""
    job = copy.deepcopy(template)
    name = _name(project.name)
    job["metadata"] = {**(job.get("metadata") or {}), "name": name}
    job["metadata"].setdefault("namespace", "default")
    pod = job["spec"]["template"]["spec"]
    pod.setdefault("restartPolicy", "Never")
    container = pod["containers"][0]
    env = {name: value if value is not None else os.environ.get(name, "")
           for name, value in docker_environment(project.docker_env).items()}
    env.update(run_env)
    kept = [e for e in container.get("env") or [] if isinstance(e, dict) and e.get("name") not in env]
    container.pop("args", None)
    container.update(
        name=name.rsplit("-", 1)[0], image=image, command=["sh", "-c", command], workingDir=CONTAINER_PROJECT_DIR,
        env=kept + [{"name": k, "value": v} for k, v in env.items()],
    )
    return job


def _kubernetes():
    return spec.import_optional("kubernetes")


def submit_job(job: dict, kube_context: str | None, run_id: str, client: MlgridClient) -> KubernetesSubmittedRun:
    kubernetes = _kubernetes()
    try:
        if kube_context:
            # $KUBECONFIG read now: the client library reads it once, when first imported
            kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), context=kube_context)
        else:
            kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException as error:
        where = f"kube-context {kube_context!r}" if kube_context else "the in-cluster configuration (no kube-context given)"
        raise ExecutionException(f"cannot use {where}: {error}", grpc.StatusCode.FAILED_PRECONDITION) from None
    api = kubernetes.client.BatchV1Api()
    namespace = job["metadata"]["namespace"]
    try:
        api.create_namespaced_job(namespace=namespace, body=job)
    except kubernetes.client.exceptions.ApiException as error:
        raise ExecutionException(f"submitting Job {job['metadata']['name']} failed: {error.status} {error.reason}",
                                 grpc.StatusCode.FAILED_PRECONDITION) from None
    return KubernetesSubmittedRun(run_id, client, api, job["metadata"]["name"], namespace)


class KubernetesSubmittedRun(SubmittedRun):
    """A submitted Job, followed by polling its status."""

    def __init__(self, run_id: str, client: MlgridClient, api, job_name: str, namespace: str):
        super().__init__(run_id, client)
        self.api, self.job_name, self.namespace = api, job_name, namespace

    def _wait_succeeded(self) -> bool:
        while not self._stopped:
            status = self.api.read_namespaced_job_status(self.job_name, self.namespace).status
            conditions = {c.type: c.status for c in status.conditions or []}
            if conditions.get("Complete") == "True":
                return True
            if conditions.get("Failed") == "True":
                return False
            time.sleep(POLL_INTERVAL_S)
        return False

    def _stop(self, signum: int) -> None:
        self.api.delete_namespaced_job(self.job_name, self.namespace, propagation_policy="Background")
