"""MLflow's REST JSON <-> mlgrid's protobuf messages: one adapter, compiled once per message type from
its descriptor (at start-up, never per request).

MLflow's JSON is protobuf JSON with the proto's snake_case names, int64 as JSON numbers, enums by
name and NaN/Infinity as strings; where mlgrid has a map<string, string> (tags, params) MLflow has a
repeated {key, value} list. Requests may also carry `run_uuid` for `run_id`; unknown fields are
ignored, as MLflow does. Artifact locations that mlgrid writes `mlgrid-artifacts:/...` are shown as
`mlflow-artifacts:/...` (the stock client then uses the gateway's mlflow-artifacts endpoints) and
read back. The few endpoints whose shape really differs from their RPC are in ENDPOINTS at the end.

One job: the JSON <-> protobuf conversion of MLflow's REST API (the adapters, their compiler and the
few endpoints that need their own), one table-driven module that the REST routes share.
"""
import base64
import binascii
import json
import math
import time
import uuid

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass

from services.common.errors import InvalidArgument

MLGRID_ARTIFACTS = "mlgrid-artifacts:"
MLFLOW_ARTIFACTS = "mlflow-artifacts:"

# Fields holding an artifact location, by full name: their mlgrid-artifacts: URIs are shown as mlflow-artifacts:.
URI_FIELDS = frozenset({
    "mlgrid.v1.Experiment.artifact_location",
    "mlgrid.v1.CreateExperimentRequest.artifact_location",
    "mlgrid.v1.RunInfo.artifact_uri",
    "mlgrid.v1.ModelVersion.source",
    "mlgrid.v1.ModelVersion.storage_location",
    "mlgrid.v1.LoggedModelInfo.artifact_uri",
    "mlgrid.v1.CreateModelVersionRequest.source",
})
# Request keys MLflow accepts for a field of another name (the first wins when both are given).
INPUT_ALIASES = {"run_uuid": "run_id"}
# Response fields MLflow also writes under a second name.
OUTPUT_ALIASES = {"mlgrid.v1.RunInfo.run_id": "run_uuid"}
# Fields MLflow's server always writes (set in its proto2 messages) that proto3 leaves out when zero: a
# metric's value 0.0 at step 0 is {"value": 0.0, "step": 0}, not {} (clients read them by key).
ALWAYS_WRITTEN = {
    "mlgrid.v1.Metric": ("key", "value", "timestamp", "step"),
    # MLflow's auth entities: AuthServiceClient reads every field, and every list, by key.
    "mlgrid.v1.User": ("id", "username", "is_admin", "roles"),
    "mlgrid.v1.Role": ("id", "name", "workspace", "permissions"),
    "mlgrid.v1.RolePermission": ("id", "role_id", "resource_type", "resource_pattern", "permission"),
    "mlgrid.v1.RoleAssignment": ("id", "user_id", "role_id"),
    "mlgrid.v1.UserPermission": ("role_id", "role_name", "workspace", "resource_type", "resource_pattern", "permission"),
    "mlgrid.v1.GetCurrentUserResponse": ("is_basic_auth",),
    "mlgrid.v1.GetUserPermissionResponse": ("allowed", "permission"),
    "mlgrid.v1.ListUserPermissionsResponse": ("is_admin", "permissions"),
    "mlgrid.v1.ListUsersResponse": ("users",),
    "mlgrid.v1.ListRolesResponse": ("roles",),
    "mlgrid.v1.ListRolePermissionsResponse": ("role_permissions",),
    "mlgrid.v1.ListRoleUsersResponse": ("assignments",),
    "mlgrid.v1.ListAccessTokensResponse": ("tokens",),
}

INTEGER_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def to_mlflow_uri(uri: str) -> str:
    return MLFLOW_ARTIFACTS + uri[len(MLGRID_ARTIFACTS):] if uri.startswith(MLGRID_ARTIFACTS) else uri


def from_mlflow_uri(uri: str) -> str:
    return MLGRID_ARTIFACTS + uri[len(MLFLOW_ARTIFACTS):] if uri.startswith(MLFLOW_ARTIFACTS) else uri


def invalid(name: str, value, expected: str) -> InvalidArgument:
    shown = json.dumps(value)
    if len(shown) > 100:
        shown = shown[:100] + "..."
    return InvalidArgument(f"Invalid value {shown} for parameter '{name}' supplied: {expected}")


def parse_body(raw: bytes) -> dict:
    """A request body: a JSON object (an empty body is an empty object)."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"Malformed JSON in the request body: {error}") from None
    if type(body) is not dict:
        raise InvalidArgument(f"The request body must be a JSON object, not {type(body).__name__}")
    return body


def json_double(value: float):
    """A double as MLflow writes it: a number, or "NaN", "Infinity", "-Infinity"."""
    if math.isfinite(value):
        return value
    return NON_FINITE.get(value, "NaN")


# ---------------------------------------------------------------- JSON -> field values


def read_string(value, name):
    if type(value) is str:
        return value
    raise invalid(name, value, "expected a string")


def read_bool(value, name):
    if type(value) is bool:
        return value
    raise invalid(name, value, "expected true or false")


def read_double(value, name):
    kind = type(value)
    if kind is float or kind is int:
        return value
    if kind is str:  # "NaN", "Infinity", "-Infinity" or a number in a string, as protobuf JSON allows
        try:
            return float(value)
        except ValueError:
            pass
    raise invalid(name, value, "expected a number")


def integer_reader(low: int, high: int):
    def read_integer(value, name):
        kind = type(value)
        if kind is str:  # protobuf JSON writes 64-bit integers as strings
            try:
                value = int(value)
            except ValueError:
                raise invalid(name, value, "expected an integer") from None
        elif kind is float and value.is_integer():
            value = int(value)
        elif kind is not int:
            raise invalid(name, value, "expected an integer")
        if not low <= value <= high:
            raise invalid(name, value, f"out of range [{low}, {high}]")
        return value

    return read_integer


def enum_reader(enum):
    numbers = {value.name: value.number for value in enum.values}
    names = ", ".join(name for name, number in numbers.items() if number or not name.endswith("_UNSPECIFIED"))

    def read_enum(value, name):
        if type(value) is str and value in numbers:
            return numbers[value]
        if type(value) is int and value in numbers.values():
            return value
        raise invalid(name, value, f"expected one of {names}")

    return read_enum


def list_reader(read_item):
    def read_list(value, name):
        if type(value) is not list:
            raise invalid(name, value, "expected a list")
        return [read_item(item, f"{name}[{i}]") for i, item in enumerate(value)]

    return read_list


def map_reader(read_key, read_value):
    """MLflow's [{key, value}, ...] list; a JSON object is taken too."""

    def read_map(value, name):
        if type(value) is dict:
            return {read_key(k, f"{name}.key"): read_value(v, f"{name}[{k}]") for k, v in value.items()}
        if type(value) is not list:
            raise invalid(name, value, "expected a list of {key, value} objects")
        entries = {}
        for i, entry in enumerate(value):
            if type(entry) is not dict or "key" not in entry:
                raise invalid(f"{name}[{i}]", entry, "expected a {key, value} object")
            entries[read_key(entry["key"], f"{name}[{i}].key")] = read_value(entry.get("value", ""), f"{name}[{i}].value")
        return entries

    return read_map


def read_uri(value, name):
    return from_mlflow_uri(read_string(value, name))


# ---------------------------------------------------------------- field values -> JSON


def write_enum(enum):
    names = {value.number: value.name for value in enum.values}
    return names.get


def write_list(write_item):
    if write_item is None:
        return list
    return lambda values: [write_item(value) for value in values]


def write_map(write_value):
    if write_value is None:
        return lambda entries: [{"key": key, "value": value} for key, value in entries.items()]
    return lambda entries: [{"key": key, "value": write_value(value)} for key, value in entries.items()]


class MessageCodec:
    """JSON <-> one message type. Its tables hold a reader per JSON key and a writer per field number."""

    def __init__(self, descriptor, codecs: "Codecs"):
        self.descriptor = descriptor
        self.cls = GetMessageClass(descriptor)
        self.codecs = codecs
        # JSON key -> (field name, reader, the key that wins over this one when both are given)
        self.readers: dict = {}
        # field number -> (JSON key, writer or None for values written as they are, second JSON key or None)
        self.writers: dict = {}
        # query parameter -> (repeated?, bool?) for GET requests
        self.query_fields: dict = {}
        # what encode writes for ALWAYS_WRITTEN fields left at their default
        self.defaults: dict = {}

    def compile(self) -> None:
        for field in self.descriptor.fields:
            reader, writer = self._field(field)
            self.readers[field.name] = (field.name, reader, None)
            self.writers[field.number] = (field.name, writer, OUTPUT_ALIASES.get(field.full_name))
            if field.message_type is None:
                self.query_fields[field.name] = (field.is_repeated, field.type == FieldDescriptor.TYPE_BOOL)
        for name in ALWAYS_WRITTEN.get(self.descriptor.full_name, ()):
            writer = self.writers[self.descriptor.fields_by_name[name].number][1]
            default = self.descriptor.fields_by_name[name].default_value
            self.defaults[name] = default if writer is None else writer(default)
        for alias, name in INPUT_ALIASES.items():
            if name in self.readers:
                self.readers[alias] = (name, self.readers[name][1], name)
                self.query_fields[alias] = self.query_fields[name]

    def _field(self, field):
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            return map_reader(self._scalar(key)[0], self._single(value)[0]), write_map(self._single(value)[1])
        reader, writer = self._single(field)
        if field.is_repeated:
            return list_reader(reader), write_list(writer)
        return reader, writer

    def _single(self, field):
        """Reader and writer of one value of the field (an element, for a repeated field)."""
        if field.message_type is not None:
            codec = self.codecs.get(field.message_type)
            return codec.decode, codec.encode
        return self._scalar(field)

    @staticmethod
    def _scalar(field):
        if field.full_name in URI_FIELDS:
            return read_uri, to_mlflow_uri
        kind = field.type
        if kind == FieldDescriptor.TYPE_STRING:
            return read_string, None
        if kind == FieldDescriptor.TYPE_BOOL:
            return read_bool, None
        if kind in FLOATS:
            return read_double, json_double
        if kind == FieldDescriptor.TYPE_ENUM:
            return enum_reader(field.enum_type), write_enum(field.enum_type)
        if kind in INTEGER_RANGES:
            return integer_reader(*INTEGER_RANGES[kind]), None
        raise NotImplementedError(f"{field.full_name}: no MLflow JSON form for protobuf type {kind}")

    def decode(self, obj, name: str = "") -> object:
        """The message of a JSON object; `name` is where it is in the request, for error messages."""
        if type(obj) is not dict:
            raise invalid(name or "request body", obj, "expected a JSON object")
        prefix = name + "." if name else ""
        values = {}
        readers = self.readers
        for key, value in obj.items():
            entry = readers.get(key)
            if entry is None or value is None:  # unknown fields are ignored; null is unset
                continue
            field, reader, overridden_by = entry
            if overridden_by is not None and overridden_by in obj:
                continue
            values[field] = reader(value, prefix + key)
        try:
            return self.cls(**values)
        except ValueError:  # e.g. a lone surrogate ("\ud800"), which a protobuf string cannot hold
            for field, value in values.items():
                try:
                    self.cls(**{field: value})
                except ValueError as error:
                    raise InvalidArgument(f"Invalid value for parameter '{prefix}{field}' supplied: {error}") from None
            raise

    def encode(self, message) -> dict:
        """The JSON object of a message: its set fields (proto3 omits default values, as MLflow's proto2 unset
        ones), and the ALWAYS_WRITTEN ones."""
        out = dict(self.defaults) if self.defaults else {}
        writers = self.writers
        for field, value in message.ListFields():
            key, writer, alias = writers[field.number]
            out[key] = value if writer is None else writer(value)
            if alias is not None:
                out[alias] = out[key]
        return out

    def query_to_json(self, query) -> dict:
        """GET query parameters as the JSON object MLflow's server makes of them: repeated fields from
        repeated keys, booleans from true/false; numbers are read from their strings by the field's reader."""
        obj = {}
        for key in query:
            spec = self.query_fields.get(key)
            if spec is None or key in obj:
                continue
            repeated, boolean = spec
            if repeated:
                obj[key] = query.getall(key)
            elif boolean:
                text = query[key].lower()
                if text not in ("true", "false"):
                    raise invalid(key, query[key], "expected true or false")
                obj[key] = text == "true"
            else:
                obj[key] = query[key]
        return obj


class Codecs:
    """The codec of each message type, compiled once."""

    def __init__(self):
        self._codecs: dict[str, MessageCodec] = {}

    def get(self, descriptor) -> MessageCodec:
        codec = self._codecs.get(descriptor.full_name)
        if codec is None:
            # Registered before its fields are compiled, so that recursive types find it.
            codec = self._codecs[descriptor.full_name] = MessageCodec(descriptor, self)
            codec.compile()
        return codec


# ---------------------------------------------------------------- endpoints


class Endpoint:
    """How one REST route maps to its RPC: by the request and response codecs. `decode` returns the
    request message and what the response needs to know of the JSON request (nothing, here)."""

    streaming = False

    def __init__(self, method, codecs: Codecs):
        self.request_codec = codecs.get(method.input_type)
        self.response_codec = codecs.get(method.output_type)
        self.request_cls = self.request_codec.cls
        self.response_cls = self.response_codec.cls

    def query_to_json(self, query) -> dict:
        return self.request_codec.query_to_json(query)

    def decode(self, obj: dict):
        return self.request_codec.decode(obj), None

    def encode(self, response, state) -> dict:
        return self.response_codec.encode(response)

    def close(self) -> None:
        """Release what the endpoint holds between requests (at the app's cleanup)."""


def page_token(offset: int, cursor: str) -> str:
    """MLflow's page token, base64 of {"offset": n}, plus the id of the stream parked for the next page."""
    return base64.b64encode(json.dumps({"offset": offset, "cursor": cursor}).encode()).decode()


def read_page_token(token: str) -> tuple[int, str]:
    """(offset, cursor id) of a page token; tokens of MLflow's own form have no cursor."""
    try:
        fields = json.loads(base64.b64decode(token, validate=True))
        offset, cursor = fields["offset"], fields.get("cursor", "")
    except (ValueError, binascii.Error, TypeError, KeyError, AttributeError):
        offset, cursor = None, ""
    if type(offset) is not int or offset < 0 or type(cursor) is not str:
        raise InvalidArgument(f"Invalid page token {token!r}: pass the next_page_token of the previous page")
    return offset, cursor


class HistoryStream:
    """One GetMetricHistory call, read page by page; a page may end inside a streamed message."""

    def __init__(self, call):
        self.call = call
        self.messages = call.__aiter__()
        self.position = 0  # points passed over or returned so far
        self.rest = None  # (key, steps, timestamps, values): points received and not yet passed

    async def _chunk(self):
        if self.rest is not None:
            chunk, self.rest = self.rest, None
            return chunk
        try:
            series = await self.messages.__anext__()
        except StopAsyncIteration:
            return None
        return series.key, series.steps, series.timestamps, series.values

    async def read(self, skip: int, count: int | None, metrics: list) -> bool:
        """Pass over `skip` points, then add `count` of them (None: all) to `metrics` as MLflow writes
        them; whether points remain after them."""
        while count is None or count > 0:
            chunk = await self._chunk()
            if chunk is None:
                return False
            key, steps, timestamps, values = chunk
            size = len(steps)
            low = min(skip, size)
            skip -= low
            high = size if count is None else min(size, low + count)
            if low < high:
                metrics += [
                    {"key": key, "value": json_double(value), "timestamp": timestamp, "step": step}
                    for step, timestamp, value in zip(steps[low:high], timestamps[low:high], values[low:high])
                ]
                if count is not None:
                    count -= high - low
            self.position += high
            if high < size:
                self.rest = (key, steps[high:], timestamps[high:], values[high:])
                return True
        self.rest = await self._chunk()
        return self.rest is not None


class ParkedStreams:
    """History streams waiting for the request of their next page, by cursor id: the next page goes on
    reading the same stream instead of reading the history again up to its offset (the stock client
    reads histories 25,000 points a request). At most LIMIT, each for IDLE_SECONDS; the oldest go first."""

    LIMIT = 32
    IDLE_SECONDS = 30.0

    def __init__(self):
        self._parked: dict[str, tuple[HistoryStream, float]] = {}

    def park(self, stream: HistoryStream) -> str:
        self._expire()
        if len(self._parked) >= self.LIMIT:
            self._parked.pop(next(iter(self._parked)))[0].call.cancel()
        cursor = uuid.uuid4().hex
        self._parked[cursor] = (stream, time.monotonic() + self.IDLE_SECONDS)
        return cursor

    def take(self, cursor: str, position: int) -> HistoryStream | None:
        """The stream parked as `cursor`, if it is at `position`; None when there is none (it expired,
        or another gateway replica parked it)."""
        self._expire()
        stream = self._parked.pop(cursor, (None, 0))[0] if cursor else None
        if stream is not None and stream.position != position:
            stream.call.cancel()
            return None
        return stream

    def _expire(self) -> None:
        now = time.monotonic()
        for cursor in [cursor for cursor, (_, until) in self._parked.items() if until < now]:
            self._parked.pop(cursor)[0].call.cancel()

    def close(self) -> None:
        for stream, _ in self._parked.values():
            stream.call.cancel()
        self._parked.clear()


class MetricHistory(Endpoint):
    """metrics/get-history: MLflow takes run_id, metric_key, max_results and page_token and answers
    {metrics: [{key, value, timestamp, step}], next_page_token}; mlgrid's GetMetricHistory streams the
    whole history as MetricSeries columns. A page is read from the stream, which is then parked for the
    next page (ParkedStreams) or, without one, cancelled; a page whose stream is gone opens a new one."""

    streaming = True
    FIELDS = {"run_id": read_string, "run_uuid": read_string, "metric_key": read_string,
              "max_results": integer_reader(-(2**31), 2**31 - 1), "page_token": read_string}

    def __init__(self, method, codecs: Codecs):
        super().__init__(method, codecs)
        self.parked = ParkedStreams()

    def query_to_json(self, query) -> dict:
        return {key: query[key] for key in self.FIELDS if key in query}

    def decode(self, obj: dict):
        values = {key: read(obj[key], key) for key, read in self.FIELDS.items() if obj.get(key) is not None}
        max_results = values.get("max_results")
        if max_results is not None and max_results <= 0:
            raise InvalidArgument(f"Invalid value {max_results} for parameter 'max_results' supplied. It must be a positive integer.")
        offset, cursor = read_page_token(values["page_token"]) if values.get("page_token") else (0, "")
        request = self.request_cls(
            run_id=values.get("run_id") or values.get("run_uuid", ""), metric_key=values.get("metric_key", ""),
            page_size=max_results or 0,
        )
        return request, (offset, max_results, cursor)

    async def collect(self, open_stream, state) -> dict:
        """The page; `open_stream()` starts the call when no parked stream goes on from the page's offset."""
        offset, max_results, cursor = state
        metrics = []
        stream = self.parked.take(cursor, offset)
        if stream is not None:
            try:
                more = await stream.read(0, max_results, metrics)
            except grpc.aio.AioRpcError:  # e.g. the call's deadline passed while parked: read the history again
                stream.call.cancel()
                stream, metrics = None, []
        if stream is None:
            stream = HistoryStream(open_stream())
            try:
                more = await stream.read(offset, max_results, metrics)
            except BaseException:
                stream.call.cancel()
                raise
        body = {"metrics": metrics} if metrics else {}
        if more:
            body["next_page_token"] = page_token(stream.position, self.parked.park(stream))
        else:
            stream.call.cancel()
        return body

    def close(self) -> None:
        self.parked.close()


class ModelVersionDownloadUri(Endpoint):
    """model-versions/get-download-uri: MLflow answers {artifact_uri}, where the version's files are
    (GetModelVersion): its logged model's artifact location, else its source."""

    def encode(self, response, state) -> dict:
        return {"artifact_uri": to_mlflow_uri(response.model_version.storage_location or response.model_version.source)}


# The routes, by annotated path, whose JSON differs from their RPC's messages.
ENDPOINTS = {
    "/api/2.0/mlflow/metrics/get-history": MetricHistory,
    "/api/2.0/mlflow/model-versions/get-download-uri": ModelVersionDownloadUri,
}


def endpoint(path: str, method, codecs: Codecs) -> Endpoint:
    kind = ENDPOINTS.get(path, Endpoint)
    if method.server_streaming and not kind.streaming:
        raise NotImplementedError(f"{method.full_name} is server-streamed: give {path} an Endpoint in ENDPOINTS that collects the stream")
    return kind(method, codecs)
