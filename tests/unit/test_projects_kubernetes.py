"""The kubernetes backend: its --backend-config, and the Job it renders, checked against the Kubernetes schema."""
import json
import os
import shutil

import kubernetes_validate
import pytest

from mlgrid.projects.kubernetes import load_backend_config, render_job
from mlgrid.projects.spec import ExecutionException, load_project

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "projects_examples")
CONFIG = os.path.join(EXAMPLES, "kubernetes", "backend_config.json")
RUN_ENV = {"MLGRID_RUN_ID": "r1", "MLGRID_TRACKING_URI": "grpc://mlgrid-gateway:50051", "MLFLOW_RUN_ID": "r1"}


def render_example(monkeypatch) -> dict:
    monkeypatch.setenv("HOME", "/home/trainer")
    config = load_backend_config(CONFIG)
    project = load_project(os.path.join(EXAMPLES, "docker"))
    return render_job(config.job_template, project, "registry.example.com/x:abc", "python train.py --alpha 0.5", RUN_ENV)


def test_example_config_is_read():
    config = load_backend_config(CONFIG)
    assert (config.kube_context, config.repository_uri) == ("mlgrid-test", "registry.example.com/mlgrid/docker-example")
    assert config.job_template["metadata"]["namespace"] == "mlgrid"


def test_rendered_job_is_a_valid_kubernetes_job(monkeypatch):
    job = render_example(monkeypatch)
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["metadata"]["name"].startswith("docker-example-") and len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["namespace"] == "mlgrid" and job["spec"]["backoffLimit"] == 0
    assert container["name"] == "docker-example"
    assert container["image"] == "registry.example.com/x:abc"
    assert container["command"] == ["sh", "-c", "python train.py --alpha 0.5"]
    assert container["workingDir"] == "/mlgrid/projects/code"
    assert container["resources"] == {"limits": {"memory": "512Mi"}}
    assert container["env"] == [
        {"name": "EXTRA", "value": "kept"}, {"name": "MODE", "value": "train"}, {"name": "HOME", "value": "/home/trainer"},
        {"name": "MLGRID_RUN_ID", "value": "r1"}, {"name": "MLGRID_TRACKING_URI", "value": "grpc://mlgrid-gateway:50051"},
        {"name": "MLFLOW_RUN_ID", "value": "r1"},
    ]


def test_job_names_are_unique_and_valid_labels(monkeypatch):
    names = {render_example(monkeypatch)["metadata"]["name"] for _ in range(20)}
    assert len(names) == 20


def test_long_odd_project_names_make_valid_job_names():
    config = load_backend_config(CONFIG)
    project = load_project(os.path.join(EXAMPLES, "docker"))
    project = type(project)(**{**project.__dict__, "name": "My Project_" + "x" * 80})
    job = render_job(config.job_template, project, "img:1", "true", {})
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
    assert len(job["metadata"]["name"]) <= 63 and job["metadata"]["name"].startswith("my-project-xxx")


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the backend config"),
    ("{not json", "is not valid JSON"),
    ("[]", "expected a JSON object with repository-uri, kube-job-template-path"),
    ('{"kube-context": "c"}', "missing repository-uri, kube-job-template-path"),
    ('{"repository-uri": "r", "kube-job-template-path": "job.yaml", "kube-ctx": "c"}', "unknown kube-ctx"),
    ('{"repository-uri": "r", "kube-job-template-path": "missing.yaml"}', "no Job template at"),
    ('{"repository-uri": "r", "kube-job-template-path": "pod.yaml"}', "expected a batch/v1 Job with spec.template.spec.containers"),
])
def test_bad_backend_configs_are_explained(tmp_path, content, message):
    shutil.copy(os.path.join(EXAMPLES, "kubernetes", "kubernetes_job_template.yaml"), tmp_path / "job.yaml")
    (tmp_path / "pod.yaml").write_text("apiVersion: v1\nkind: Pod\nspec: {containers: []}\n")
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ExecutionException, match="backend config|Job") as raised:
        load_backend_config(str(path))
    assert message in str(raised.value)


def test_the_kubernetes_backend_needs_a_config():
    with pytest.raises(ExecutionException, match="needs --backend-config FILE"):
        load_backend_config(None)


def test_kube_context_is_optional_and_template_paths_may_be_absolute(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "repository-uri": "r", "kube-job-template-path": os.path.join(EXAMPLES, "kubernetes", "kubernetes_job_template.yaml"),
    }))
    assert load_backend_config(str(tmp_path / "config.json")).kube_context is None
