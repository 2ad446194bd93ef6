"""helm lint, and every object of every value set valid for the oldest and newest Kubernetes the chart claims."""
import json
import re

import kubernetes_validate
import pytest
import yaml

from chartlib import CHART, FULLNAME, objects, one, rendered, requires_helm, VALUE_SETS, with_values  # noqa: F401 (objects: a fixture)

pytestmark = requires_helm

CRD_KINDS = {"ServiceMonitor"}  # prometheus-operator's: not in Kubernetes' schemas


def claimed_versions() -> list[str]:
    """The oldest version Chart.yaml's kubeVersion admits, and the newest kubernetes-validate knows."""
    claim = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    oldest = re.fullmatch(r">=\s*(\d+\.\d+)\.\d+(-0)?", claim)
    assert oldest, f"kubeVersion {claim!r}: expected an open range '>=X.Y.Z-0'"
    return [f"{oldest.group(1)}.0", kubernetes_validate.latest_version()]


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_helm_lint_strict(value_set):
    result = with_values("lint", VALUE_SETS[value_set], "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", claimed_versions())
def test_every_object_is_valid_kubernetes(objects, version):
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} on Kubernetes {version}: {error.message} at {list(error.path)}")


def test_service_monitor_scrapes_every_metrics_port():
    objects = rendered("monitoring")
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    assert set(endpoints) == {"metrics", "http"} and all(e["path"] == "/metrics" for e in endpoints.values())
    # The named ports exist on the Services: metrics on all but serving, whose /metrics is on http.
    ports = {s["metadata"]["labels"]["app.kubernetes.io/component"]: {p["name"] for p in s["spec"]["ports"]}
             for s in objects if s["kind"] == "Service" and "app.kubernetes.io/component" in s["metadata"]["labels"]}
    for component in ("tracking", "artifacts", "registry", "gateway"):
        assert "metrics" in ports[component]
    assert "http" in ports["serving"] and "metrics" not in ports["serving"]
    assert endpoints["http"]["relabelings"] == [{"sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
                                                 "regex": "serving", "action": "keep"}]


def test_dashboard_is_a_grafana_sidecar_configmap():
    dashboard = one(rendered("monitoring"), "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["mlgrid.json"])["panels"]
