"""Input checks of the registry's own rules (model names, versions, stages, aliases, sources, follower
leases), as MLflow's; ids, keys, values and unsafe URIs are checked by the shared services/db/validation.py.
Each failure is an InvalidArgument that says what to fix."""
import re
from urllib.parse import urlparse

from services.common.errors import InvalidArgument
from services.db import validation as db_validation
from services.db.schema import MAX_MODEL_NAME_LENGTH
from services.db.validation import MODEL_ID_PATTERN, RUN_ID_PATTERN, STORE_SCHEMES

STAGES = ("None", "Staging", "Production", "Archived")
ARCHIVING_STAGES = ("Staging", "Production")  # the stages archive_existing_versions applies to
MAX_ALIAS_LENGTH = 255

_ALIAS_PATTERN = re.compile(r"^[\w\-]+$")
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)
_VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,8}$")
_SOURCE_FORMS = (
    "runs:/<run_id>/<path>, models:/<logged model id>, mlgrid-artifacts:/<path>, or a store URI "
    f"({', '.join(s + '://bucket/path' for s in STORE_SCHEMES)})"
)


def model_name(value: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument("registered model name must not be empty")
    if len(value) > MAX_MODEL_NAME_LENGTH:
        raise InvalidArgument(f"registered model name is {len(value)} characters; the limit is {MAX_MODEL_NAME_LENGTH}")
    if "/" in value or "@" in value or any(ord(c) < 32 for c in value):
        raise InvalidArgument(
            f"invalid registered model name {value!r}: it must not contain '/', '@' or control characters, "
            "which models:/<name>/<version> and models:/<name>@<alias> URIs could not express"
        )
    return value


def version(value: str) -> int:
    if not _VERSION_PATTERN.match(str(value)):
        raise InvalidArgument(f"invalid model version {value!r}: versions are positive integers, e.g. '1'")
    return int(value)


def stage(value: str) -> str:
    """The canonical spelling of a stage named in any case."""
    for known in STAGES:
        if value.lower() == known.lower():
            return known
    raise InvalidArgument(f"invalid stage {value!r}: expected one of {', '.join(STAGES)}")


def alias(value: str) -> str:
    if not value:
        raise InvalidArgument("alias must not be empty")
    if len(value) > MAX_ALIAS_LENGTH:
        raise InvalidArgument(f"alias is {len(value)} characters; the limit is {MAX_ALIAS_LENGTH}")
    if not _ALIAS_PATTERN.match(value):
        raise InvalidArgument(f"invalid alias {value!r}: aliases may contain letters, digits, underscores and dashes")
    if _RESERVED_ALIAS.match(value):
        raise InvalidArgument(
            f"alias {value!r} is reserved: 'latest' and 'v<number>' already name versions in models:/ URIs; choose another"
        )
    return value


DEFAULT_LEASE_SECONDS = 60
MAX_LEASE_SECONDS = 3600


def follower(value: str) -> str:
    if not value or len(value) > MAX_MODEL_NAME_LENGTH:
        raise InvalidArgument(f"follower must name the serving replica in 1 to {MAX_MODEL_NAME_LENGTH} characters")
    return value


def lease_seconds(value: int) -> int:
    if value == 0:
        return DEFAULT_LEASE_SECONDS
    if not 0 < value <= MAX_LEASE_SECONDS:
        raise InvalidArgument(f"lease_seconds must be between 1 and {MAX_LEASE_SECONDS} (0: {DEFAULT_LEASE_SECONDS}); got {value}")
    return value


def tag(kind: str, key: str, value: str) -> None:
    db_validation.tag_value(db_validation.key(kind, key), value)


def source(value: str) -> str:
    """Accept the source URIs a model version may point at; refuse local paths and anything that could
    traverse out of a store (`..`, `file:`, fragments, query strings) or loop (`models:/`)."""
    if not value:
        raise InvalidArgument(f"a model version needs a source: {_SOURCE_FORMS}")
    bad = lambda why: InvalidArgument(f"invalid model version source {value!r}: {why}")  # noqa: E731
    unsafe = db_validation.unsafe_uri_part(value)
    if unsafe:
        raise bad(unsafe)
    parsed = urlparse(value)
    if parsed.scheme == "models":
        if not _logged_model_in(value):
            raise bad("a models:/ source names a logged model, models:/m-<32 hex>; for a registered version, "
                      "register the source of that version instead")
        return value
    if parsed.scheme == "runs":
        run_id, _, path = value[len("runs:/"):].partition("/") if value.startswith("runs:/") and not parsed.netloc else ("", "", "")
        if not RUN_ID_PATTERN.match(run_id) or not path or path.startswith("/") or "//" in path:
            raise bad("expected runs:/<32-hex run id>/<relative path>")
        return value
    if parsed.scheme == "mlgrid-artifacts":
        if parsed.netloc or not parsed.path.strip("/") or "//" in parsed.path:
            raise bad("expected mlgrid-artifacts:/<relative path>")
        return value
    if parsed.scheme in STORE_SCHEMES:
        if not parsed.netloc:
            raise bad(f"expected {parsed.scheme}://<bucket>/<path>")
        return value
    raise bad(f"local paths and {parsed.scheme or 'scheme-less'} URIs are not allowed; use {_SOURCE_FORMS}")


def _logged_model_in(source_uri: str) -> str:
    """The logged model id of a models:/<model id> source, else ''."""
    model_id = source_uri[len("models:/"):] if source_uri.startswith("models:/") else ""
    return model_id if MODEL_ID_PATTERN.match(model_id) else ""


def logged_model_of(source_uri: str, model_id: str) -> str:
    """The logged model a version is made from: named by its models:/<model id> source, or by model_id
    (MLflow's client sends both); '' when neither."""
    from_source = _logged_model_in(source_uri)
    if model_id:
        db_validation.model_id(model_id)
        if from_source and model_id != from_source:
            raise InvalidArgument(f"model_id {model_id} differs from the logged model of source {source_uri!r}; make them agree")
    return model_id or from_source


def run_id_of(source_uri: str) -> str:
    """The run id of a runs:/ source, else ''."""
    return source_uri[len("runs:/"):].partition("/")[0] if source_uri.startswith("runs:/") else ""


def parse_models_uri(uri: str) -> tuple[str, str, str]:
    """`models:/<name>/<version|stage|latest>` or `models:/<name>@<alias>` as (name, kind, value),
    kind being "version", "stage", "latest" or "alias"."""
    hint = "expected models:/<name>/<version>, models:/<name>/<stage>, models:/<name>/latest or models:/<name>@<alias>"
    if not uri.startswith("models:/") or uri.startswith("models://"):
        raise InvalidArgument(f"invalid model URI {uri!r}: {hint}")
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, _, alias_name = rest.partition("@")
        if not name or not alias_name or "/" in alias_name:
            raise InvalidArgument(f"invalid model URI {uri!r}: {hint}")
        return model_name(name), "alias", alias_name
    name, _, suffix = rest.rpartition("/")
    if not name or not suffix:
        raise InvalidArgument(f"invalid model URI {uri!r}: {hint}")
    model_name(name)
    if suffix.isdigit():
        return name, "version", str(version(suffix))
    if suffix.lower() == "latest":
        return name, "latest", ""
    try:
        return name, "stage", stage(suffix)
    except InvalidArgument:
        raise InvalidArgument(
            f"invalid model URI {uri!r}: {suffix!r} is neither a version number, 'latest', nor a stage "
            f"({', '.join(STAGES)}); {hint}"
        ) from None
