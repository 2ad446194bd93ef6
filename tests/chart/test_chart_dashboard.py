"""The Grafana dashboard queries only metrics the services define, with labels they have.
(That a running service exports each is checked on the multi-process topology.)"""
import importlib
import json
import re

from prometheus_client import REGISTRY

from chartlib import FULLNAME, one, rendered, REPO, requires_helm

pytestmark = requires_helm

SCRAPE_LABELS = {"namespace", "pod", "service", "job", "instance", "le"}  # added by Prometheus or the histogram


def defined_metrics() -> dict[str, set[str]]:
    """{exported sample name: label names} of every mlgrid_* metric in services/: the modules that use
    prometheus_client are imported, which registers their metrics."""
    for path in (REPO / "services").rglob("*.py"):
        if "prometheus_client" in path.read_text():
            importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
    # The registry knows each metric's names: its samples' (a histogram's _bucket, _count, _sum...) and the bare
    # family name of a counter or histogram, which no sample has. prometheus_client has no public way to list them,
    # nor a metric's label names.
    return {name: set(collector._labelnames) for collector, names in REGISTRY._collector_to_names.items()  # noqa: SLF001
            for name in names if name.startswith("mlgrid_") and not any(other.startswith(name + "_") for other in names)}


def queries() -> list[str]:
    dashboard = json.loads(one(rendered("monitoring"), "ConfigMap", f"{FULLNAME}-dashboard")["data"]["mlgrid.json"])
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return exprs + [variable["definition"] for variable in dashboard["templating"]["list"] if variable["type"] == "query"]


def test_panels_query_only_defined_metrics_and_labels():
    defined = defined_metrics()
    assert {"mlgrid_grpc_requests_total", "mlgrid_serving_requests_total", "mlgrid_artifacts_bytes_total"} <= defined.keys()
    used = set()
    for expr in queries():
        metrics = set(re.findall(r"\bmlgrid_[a-z0-9_]+", expr))
        assert metrics, expr
        unknown = metrics - defined.keys()
        assert not unknown, f"{expr}: no such metric {sorted(unknown)}"
        labels = set(re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)) | set(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"", expr))
        label_names = {name.strip() for group in labels for name in group.split(",") if name.strip()}
        for metric in metrics:
            assert label_names <= defined[metric] | SCRAPE_LABELS, f"{expr}: {metric} has labels {sorted(defined[metric])}"
        used |= metrics
    # Every service's own metrics have a panel.
    for prefix in ("mlgrid_grpc_", "mlgrid_tracking_", "mlgrid_artifacts_", "mlgrid_serving_"):
        assert any(name.startswith(prefix) for name in used), prefix
