"""Input checks with MLflow's limits; each failure is an InvalidArgument that says what to fix."""
import os
import posixpath
import re
from urllib.parse import urlparse

from services.common.errors import InvalidArgument

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 256
MAX_RUN_NAME_LENGTH = 250
MAX_RESULTS_LIMIT = 50_000
MAX_INGEST_POINTS_PER_BATCH = 1_000_000
MAX_REQUEST_ID_LENGTH = 64
MAX_BULK_RUNS = 100  # runs per bulk metric history request
MAX_USER_ID_LENGTH = 256
MAX_ARTIFACT_LOCATION_LENGTH = 950  # runs append /<run id>/artifacts within a 1000-character column

# Letters (any script), digits, and _ - . space / : as MLflow allows.
_KEY_PATTERN = re.compile(r"^[\w\-. /:]+$")
MODEL_ID_PATTERN = re.compile(r"^m-[0-9a-f]{32}$")  # a logged model, as MLflow 3
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex, as MLflow
_EXPERIMENT_ID_PATTERN = re.compile(r"^[0-9]{1,18}$")
# Object stores addressed by URI, where no local path is involved.
STORE_SCHEMES = ("s3", "gs", "wasbs", "abfss", "hdfs")
REMOTE_ARTIFACT_SCHEMES = frozenset({*STORE_SCHEMES, "mlgrid-artifacts", "mlflow-artifacts"})


def key(kind: str, value: str) -> str:
    if not value:
        raise InvalidArgument(f"{kind} key must not be empty")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"{kind} key '{value[:40]}...' is {len(value)} characters; the limit is {MAX_KEY_LENGTH}")
    if not _KEY_PATTERN.match(value):
        raise InvalidArgument(
            f"invalid {kind} key {value!r}: keys may contain letters, digits, underscores (_), dashes (-), "
            "periods (.), spaces ( ), colons (:) and slashes (/)"
        )
    if value.startswith("/") or "//" in value or ".." in value.split("/"):
        raise InvalidArgument(f"invalid {kind} key {value!r}: it must be a relative path without '..' or empty segments")
    return value


def param_value(param_key: str, value: str) -> str:
    if len(value) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidArgument(
            f"param {param_key!r} has a value of {len(value)} characters; the limit is {MAX_PARAM_VALUE_LENGTH}"
        )
    return value


def tag_value(tag_key: str, value: str) -> str:
    if len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(f"tag {tag_key!r} has a value of {len(value)} characters; the limit is {MAX_TAG_VALUE_LENGTH}")
    return value


def run_id(value: str) -> str:
    if not RUN_ID_PATTERN.match(value or ""):
        raise InvalidArgument(f"invalid run id {value!r}: a run id is 32 lowercase hexadecimal characters")
    return value


def experiment_id(value: str) -> int:
    if not _EXPERIMENT_ID_PATTERN.match(value or ""):
        raise InvalidArgument(f"invalid experiment id {value!r}: experiment ids are non-negative integers, e.g. '0'")
    return int(value)


def experiment_name(value: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument("experiment name must not be empty")
    if len(value) > MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidArgument(f"experiment name is {len(value)} characters; the limit is {MAX_EXPERIMENT_NAME_LENGTH}")
    return value


def run_name(value: str) -> str:
    if len(value) > MAX_RUN_NAME_LENGTH:
        raise InvalidArgument(f"run name is {len(value)} characters; the limit is {MAX_RUN_NAME_LENGTH}")
    return value


def request_id(value: str) -> str:
    if len(value) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument(
            f"request/batch id is {len(value)} characters; the limit is {MAX_REQUEST_ID_LENGTH} (a UUID is 32 or 36)"
        )
    return value


def user_id(value: str) -> str:
    if len(value) > MAX_USER_ID_LENGTH:
        raise InvalidArgument(f"user id is {len(value)} characters; the limit is {MAX_USER_ID_LENGTH}")
    return value


def max_results(value: int, default: int = 1000, limit: int = MAX_RESULTS_LIMIT) -> int:
    if value == 0:
        return default
    if value < 0 or value > limit:
        raise InvalidArgument(f"max_results must be between 1 and {limit}, got {value}")
    return value


def bulk_run_ids(run_ids) -> None:
    if not run_ids or len(run_ids) > MAX_BULK_RUNS:
        raise InvalidArgument(f"run_ids must name between 1 and {MAX_BULK_RUNS} runs, got {len(run_ids)}")


def batch_sizes(n_metrics: int, n_params: int, n_tags: int) -> None:
    for what, count, limit in (
        ("metrics", n_metrics, MAX_METRICS_PER_BATCH),
        ("params", n_params, MAX_PARAMS_PER_BATCH),
        ("tags", n_tags, MAX_TAGS_PER_BATCH),
    ):
        if count > limit:
            raise InvalidArgument(f"a batch may hold at most {limit} {what}; this one has {count}. Split it into several calls")


def unsafe_uri_part(uri: str) -> str:
    """What makes `uri` unsafe to store as a location (each has been a path-traversal route in MLflow); '' if nothing."""
    if "\x00" in uri or "\\" in uri:
        return "NUL bytes and backslashes are not allowed"
    if "#" in uri or "?" in uri:
        return "fragments (#) and query strings (?) are not allowed"
    if ".." in urlparse(uri).path.split("/"):
        return "'..' segments are not allowed"
    return ""


def artifact_location(location: str, local_roots: list[str]) -> str:
    """Accept a store URI (s3://, mlgrid-artifacts:/, ...) or a local path under one of the roots.

    Rejects `..`, fragments, query strings and local paths outside the roots: such
    locations have been a path-traversal route in MLflow.
    """
    if len(location) > MAX_ARTIFACT_LOCATION_LENGTH:
        raise InvalidArgument(f"artifact location is {len(location)} characters; the limit is {MAX_ARTIFACT_LOCATION_LENGTH}")
    unsafe = unsafe_uri_part(location)
    if unsafe:
        raise InvalidArgument(f"invalid artifact location {location!r}: {unsafe}")
    parsed = urlparse(location)
    if parsed.scheme in REMOTE_ARTIFACT_SCHEMES:
        return location
    if parsed.scheme not in ("", "file") or (parsed.scheme == "file" and parsed.netloc not in ("", "localhost")):
        raise InvalidArgument(
            f"invalid artifact location {location!r}: use one of the schemes "
            f"{', '.join(sorted(REMOTE_ARTIFACT_SCHEMES))}, or a local path under {', '.join(local_roots)}"
        )
    path = os.path.realpath(parsed.path if parsed.scheme == "file" else location)
    for root in local_roots:
        root_path = os.path.realpath(root)
        if path == root_path or path.startswith(root_path.rstrip("/") + "/"):
            return "file://" + posixpath.normpath(path)
    raise InvalidArgument(
        f"artifact location {location!r} is outside the configured artifact roots ({', '.join(local_roots)}); "
        "choose a folder under one of them, or set MLGRID_ARTIFACT_ROOTS"
    )


def model_id(model_id: str) -> str:
    if not MODEL_ID_PATTERN.match(model_id or ""):
        raise InvalidArgument(f"invalid logged model id {model_id!r}: expected m-<32 hexadecimal characters>")
    return model_id
