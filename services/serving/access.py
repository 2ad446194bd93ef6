"""Who may call each Open Inference Protocol method of serving: the probes answer anyone (kubelet and
KServe call them without credentials); a model's metadata and predictions need READ on what it serves
(its registered model for a `models:/` URI, its run's experiment for a `runs:/` URI), resolved by the
repository from the served name (SERVED_MODEL)."""
from services.identity.access import Rule, needs, public
from services.identity.model import Permission

SERVED_MODEL = "served_model"  # a served model's name: serving resolves what it serves

RULES: dict[str, Rule] = {
    "ServerLive": public("a liveness probe"),
    "ServerReady": public("a readiness probe"),
    "ModelReady": public("a readiness probe per model"),
    "ServerMetadata": public("says only the server's name, version and extensions"),
    "ModelMetadata": needs(Permission.READ, SERVED_MODEL, "name"),
    "ModelInfer": needs(Permission.READ, SERVED_MODEL, "model_name"),
}
