"""The gateway's gRPC routing: one generic handler forwards every call, as bytes, to the backend
of its service (by the service part of the method path), whatever its kind of streaming, with
the caller's metadata and deadline, and hands back the backend's responses, metadata and status
unchanged; a caller that cancels cancels the backend call."""
import logging

import grpc
from google.protobuf import descriptor_pool

from services.common.server import CHANNEL_OPTIONS

log = logging.getLogger("mlgrid.gateway")

# Headers that grpc sets itself on each hop; every other key of the caller's metadata goes through.
HOP_HEADERS = frozenset({"user-agent", "te", "content-type", "host", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"})

# The channel method and the handler factory for each kind: (client streaming, server streaming).
KINDS = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def forwarded_metadata(metadata) -> tuple:
    """The caller's metadata minus pseudo-headers and what grpc sets on each hop itself."""
    return tuple((key, value) for key, value in metadata or () if not key.startswith(":") and key not in HOP_HEADERS)


def method_kind(full_method: str) -> tuple[bool, bool]:
    """(client streaming, server streaming) of a method whose descriptor is loaded; a stream both ways
    otherwise, which carries every kind of call (the wire format is the same)."""
    service, _, name = full_method.lstrip("/").partition("/")
    try:
        method = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    except KeyError:
        return True, True
    return method.client_streaming, method.server_streaming


class Backend:
    """One routed service: its full proto name, a label for messages, its address (empty: not routed),
    the variable that sets the address, and one long-lived channel to it."""

    def __init__(self, service: str, label: str, target: str, env_var: str):
        self.service = service
        self.label = label
        self.target = target
        self.env_var = env_var
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) if target else None
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    @property
    def no_address_message(self) -> str:
        return f"the gateway has no address for the {self.label} service ({self.service}): set {self.env_var}"

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()

    def handler(self, full_method: str) -> grpc.RpcMethodHandler:
        """The handler that forwards `full_method` to this backend, as the kind of call it is."""
        handler = self._handlers.get(full_method)
        if handler is None:
            handler = self._handlers[full_method] = self._new_handler(full_method)
        return handler

    def _new_handler(self, full_method: str) -> grpc.RpcMethodHandler:
        kind = method_kind(full_method)
        channel_method, make_handler = KINDS[kind]
        # No serializers on either side: requests and responses stay the bytes they came as.
        start_call = getattr(self.channel, channel_method)(full_method)
        forward = self._forward_stream if kind[1] else self._forward_unary
        return make_handler(forward(start_call))

    def _forward_unary(self, start_call):
        async def forward(request, context):
            call = start_call(request, timeout=context.time_remaining(), metadata=forwarded_metadata(context.invocation_metadata()))
            try:
                response = await call
                await relay_initial_metadata(call, context)
            except grpc.aio.AioRpcError as error:
                await self._abort(error, context)
            finally:
                call.cancel()  # a no-op once the call is done; ends it when the caller cancelled
            await relay_trailing_metadata(call, context)
            return response

        return forward

    def _forward_stream(self, start_call):
        async def forward(request, context):
            call = start_call(request, timeout=context.time_remaining(), metadata=forwarded_metadata(context.invocation_metadata()))
            try:
                await relay_initial_metadata(call, context)
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as error:
                await self._abort(error, context)
            finally:
                call.cancel()
            await relay_trailing_metadata(call, context)

        return forward

    def details(self, error: grpc.aio.AioRpcError) -> str:
        """The backend's error message; a backend that never answered is named."""
        if error.code() == grpc.StatusCode.UNAVAILABLE and not error.initial_metadata():
            return f"the {self.label} service at {self.target} is unavailable: {error.details()}"
        return error.details()

    async def _abort(self, error: grpc.aio.AioRpcError, context) -> None:
        """End the call with the backend's status."""
        await context.abort(error.code(), self.details(error), tuple(error.trailing_metadata() or ()))


async def relay_initial_metadata(call, context) -> None:
    metadata = await call.initial_metadata()
    if metadata:
        await context.send_initial_metadata(tuple(metadata))


async def relay_trailing_metadata(call, context) -> None:
    metadata = await call.trailing_metadata()
    if metadata:
        context.set_trailing_metadata(tuple(metadata))


def refusal(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler that ends any kind of call with `code`."""

    async def refuse(request_iterator, context):
        await context.abort(code, message)
        yield b""  # never reached: makes this a stream handler

    return grpc.stream_stream_rpc_method_handler(refuse)


class Router(grpc.GenericRpcHandler):
    """Finds the backend of each call by its service name."""

    def __init__(self, backends: list[Backend]):
        self.backends = {backend.service: backend for backend in backends}

    def service(self, handler_call_details) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if isinstance(method, bytes):
            method = method.decode()
        backend = self.backends.get(method.lstrip("/").partition("/")[0])
        if backend is None:
            return refusal(
                grpc.StatusCode.UNIMPLEMENTED,
                f"the gateway routes no service of {method}; it routes {', '.join(sorted(self.backends))}",
            )
        if backend.channel is None:
            return refusal(grpc.StatusCode.UNAVAILABLE, backend.no_address_message)
        return backend.handler(method)
