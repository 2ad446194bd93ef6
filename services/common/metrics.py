"""Prometheus metrics for every gRPC service: calls by method and code, latency (recorded by the
interceptor chain, services.common.interceptors); and for HTTP APIs (the gateway's REST side):
requests by route and status, latency."""
import time

import grpc
from prometheus_client import Counter, Histogram

GRPC_REQUESTS = Counter(
    "mlgrid_grpc_requests_total", "gRPC calls handled, by method and status code", ["service", "method", "code"]
)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
GRPC_LATENCY = Histogram(
    "mlgrid_grpc_request_duration_seconds", "gRPC call latency, by method", ["service", "method"], buckets=LATENCY_BUCKETS
)
HTTP_REQUESTS = Counter(
    "mlgrid_http_requests_total", "HTTP requests handled, by route, method and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "mlgrid_http_request_duration_seconds", "HTTP request latency, by route and method", ["route", "method"],
    buckets=LATENCY_BUCKETS,
)


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


class MethodStats:
    """The metric children of one gRPC method, resolved once rather than per call
    (the interceptor chain's MetricsInterceptor records each call with them)."""

    def __init__(self, full_method: str):
        self.service, self.method = _split(full_method)
        self.latency = GRPC_LATENCY.labels(self.service, self.method)
        self._counters: dict[grpc.StatusCode, object] = {}

    def record(self, context, started: float, failed: bool) -> None:
        code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
        counter = self._counters.get(code)
        if counter is None:
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            counter = self._counters[code] = GRPC_REQUESTS.labels(self.service, self.method, name)
        counter.inc()
        self.latency.observe(time.perf_counter() - started)
