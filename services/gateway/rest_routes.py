"""The gateway's REST routes, derived at start-up from the `google.api.http` annotations of the routed
services' methods (as MLflow derives its routes from its service.proto): each binding, and each of its
additional bindings, is a route to that method; every `/api/...` path is also served under
`/ajax-api/...`, as MLflow does for its web UI."""
from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor


@dataclass(frozen=True)
class Route:
    verb: str  # GET, POST, PATCH, DELETE, PUT
    path: str  # as served, a template in aiohttp's syntax too: /api/2.0/mlflow/logged-models/{model_id}
    annotated_path: str  # the path of the annotation (the /api/... one)
    service: str  # full service name, e.g. mlgrid.v1.TrackingService
    method: MethodDescriptor

    @property
    def rpc(self) -> str:
        """The method's gRPC path: /mlgrid.v1.TrackingService/GetRun."""
        return f"/{self.service}/{self.method.name}"


def bindings(rule) -> list[tuple[str, str]]:
    """(verb, path) of an HttpRule and of its additional bindings."""
    found = []
    for binding in (rule, *rule.additional_bindings):
        pattern = binding.WhichOneof("pattern")
        if pattern == "custom":
            found.append((binding.custom.kind.upper(), binding.custom.path))
        elif pattern is not None:
            found.append((pattern.upper(), getattr(binding, pattern)))
    return found


def ajax_path(path: str) -> str | None:
    return "/ajax-api/" + path[len("/api/"):] if path.startswith("/api/") else None


def routes(services: list[str]) -> list[Route]:
    """The routes of every annotated method of these services (their descriptors must be loaded)."""
    pool = descriptor_pool.Default()
    found: dict[tuple[str, str], Route] = {}
    for service_name in services:
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            for verb, path in bindings(options.Extensions[annotations_pb2.http]):
                for served in filter(None, (path, ajax_path(path))):
                    route = Route(verb, served, path, service.full_name, method)
                    other = found.setdefault((verb, served), route)
                    if other is not route:
                        raise ValueError(f"{verb} {served} is bound to both {other.rpc} and {route.rpc}")
    return list(found.values())
