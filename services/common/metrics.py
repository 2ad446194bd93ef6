"""Prometheus metrics for every gRPC service: calls by method and code, latency."""
import time

import grpc
from prometheus_client import Counter, Histogram

GRPC_REQUESTS = Counter(
    "mlgrid_grpc_requests_total", "gRPC calls handled, by method and status code", ["service", "method", "code"]
)
GRPC_LATENCY = Histogram(
    "mlgrid_grpc_request_duration_seconds",
    "gRPC call latency, by method",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


class PrometheusInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every call, whatever its kind of streaming."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split(handler_call_details.method)
        counter = {code: GRPC_REQUESTS.labels(service, method, code.name) for code in grpc.StatusCode}
        latency = GRPC_LATENCY.labels(service, method)

        def record(context, started, failed):
            code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
            if isinstance(code, int):
                code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
            counter[code].inc()
            latency.observe(time.perf_counter() - started)

        def wrap_unary_response(behavior):
            async def wrapped(request_or_iterator, context):
                started = time.perf_counter()
                try:
                    response = await behavior(request_or_iterator, context)
                except BaseException:
                    record(context, started, True)
                    raise
                record(context, started, False)
                return response

            return wrapped

        def wrap_stream_response(behavior):
            async def wrapped(request_or_iterator, context):
                started = time.perf_counter()
                try:
                    async for item in behavior(request_or_iterator, context):
                        yield item
                except BaseException:
                    record(context, started, True)
                    raise
                record(context, started, False)

            return wrapped

        if handler.unary_unary:
            return handler._replace(unary_unary=wrap_unary_response(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap_unary_response(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=wrap_stream_response(handler.unary_stream))
        return handler._replace(stream_stream=wrap_stream_response(handler.stream_stream))
