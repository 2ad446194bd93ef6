"""Who may call each Open Inference Protocol method of serving: the probes answer anyone (kubelet and
KServe call them without credentials); a model's metadata and predictions need READ on what it serves
(its registered model for a `models:/` URI, its run's experiment for a `runs:/` URI), resolved by the
repository from the served name (SERVED_MODEL)."""
import re

from services.db.validation import MODEL_ID_PATTERN
from services.identity.access import Rule, needs, public
from services.identity.model import LOGGED_MODEL, REGISTERED_MODEL, RUN, Permission

SERVED_MODEL = "served_model"  # a served model's name: serving resolves what it serves

RULES: dict[str, Rule] = {
    "ServerLive": public("a liveness probe"),
    "ServerReady": public("a readiness probe"),
    "ModelReady": public("a readiness probe per model"),
    "ServerMetadata": public("says only the server's name, version and extensions"),
    "ModelMetadata": needs(Permission.READ, SERVED_MODEL, "name"),
    "ModelInfer": needs(Permission.READ, SERVED_MODEL, "model_name"),
}

# The HTTP routes (by handler name) that are these RPCs; every other route of serving's REST side is public
# (probes, metadata of the server, /metrics).
HTTP_RPCS = {"model_metadata": "ModelMetadata", "infer": "ModelInfer", "invocations": "ModelInfer"}


def served_resource(uri: str) -> tuple[str, str] | None:
    """What stands behind a served model's URI: its registered model, logged model or run; None for a
    model served from a path or a bucket (signed in is then enough)."""
    if uri.startswith("models:/"):
        name = re.split(r"[/@]", uri[len("models:/"):].lstrip("/"), maxsplit=1)[0]
        return (LOGGED_MODEL, name) if MODEL_ID_PATTERN.match(name) else (REGISTERED_MODEL, name)
    if uri.startswith("runs:/"):
        run_id = uri[len("runs:/"):].lstrip("/").split("/", 1)[0]
        return (RUN, run_id) if run_id else None
    return None
