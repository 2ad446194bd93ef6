"""Who may call each ModelRegistryService method (MLflow's basic-auth model): a registered model's
versions, aliases, stages and tags follow it; reading needs READ, changing EDIT (moving an alias or a
stage included: serving follows them), deleting MANAGE. Serving a model (following it) needs READ.
Searches and the event stream are narrowed to the models the caller may read."""
import re

from services.db.validation import MODEL_ID_PATTERN
from services.identity.access import Rule, creating, custom, needs, signed_in
from services.identity.model import LOGGED_MODEL, REGISTERED_MODEL, RUN, Permission

READ, EDIT, MANAGE = Permission.READ, Permission.EDIT, Permission.MANAGE


def model_of_uri(request):
    """The registered model (or logged model: models:/m-...) a `models:/` URI names."""
    if not request.uri.startswith("models:/"):
        return  # the handler refuses it
    name = re.split(r"[/@]", request.uri[len("models:/"):].lstrip("/"), maxsplit=1)[0]
    if MODEL_ID_PATTERN.match(name) and name == request.uri[len("models:/"):].strip("/"):
        yield LOGGED_MODEL, name
    elif name:
        yield REGISTERED_MODEL, name


def new_version(request):
    """EDIT on the model; READ on the run or logged model the version comes from."""
    yield REGISTERED_MODEL, request.name, EDIT
    if request.run_id:
        yield RUN, request.run_id, READ
    if request.model_id:
        yield LOGGED_MODEL, request.model_id, READ


RULES: dict[str, Rule] = {
    "CreateRegisteredModel": creating(REGISTERED_MODEL, "registered_model.name", "any signed-in user may register a model"),
    "GetRegisteredModel": needs(READ, REGISTERED_MODEL, "name"),
    "RenameRegisteredModel": needs(EDIT, REGISTERED_MODEL, "name"),
    "UpdateRegisteredModel": needs(EDIT, REGISTERED_MODEL, "name"),
    "DeleteRegisteredModel": needs(MANAGE, REGISTERED_MODEL, "name"),
    "SearchRegisteredModels": signed_in("answers only the models the caller may read"),
    "SetRegisteredModelTag": needs(EDIT, REGISTERED_MODEL, "name"),
    "DeleteRegisteredModelTag": needs(EDIT, REGISTERED_MODEL, "name"),
    "CreateModelVersion": custom(EDIT, new_version),
    "GetModelVersion": needs(READ, REGISTERED_MODEL, "name"),
    "UpdateModelVersion": needs(EDIT, REGISTERED_MODEL, "name"),
    "DeleteModelVersion": needs(MANAGE, REGISTERED_MODEL, "name"),
    "SearchModelVersions": signed_in("answers only the versions of models the caller may read"),
    "GetLatestVersions": needs(READ, REGISTERED_MODEL, "name"),
    "TransitionModelVersionStage": needs(EDIT, REGISTERED_MODEL, "name"),
    "SetModelVersionTag": needs(EDIT, REGISTERED_MODEL, "name"),
    "DeleteModelVersionTag": needs(EDIT, REGISTERED_MODEL, "name"),
    "SetRegisteredModelAlias": needs(EDIT, REGISTERED_MODEL, "name"),
    "DeleteRegisteredModelAlias": needs(EDIT, REGISTERED_MODEL, "name"),
    "GetModelVersionByAlias": needs(READ, REGISTERED_MODEL, "name"),
    "ResolveModelUri": custom(READ, model_of_uri),
    "FollowModel": needs(READ, REGISTERED_MODEL, "name"),
    "UnfollowModel": needs(READ, REGISTERED_MODEL, "name"),
    "WatchEvents": signed_in("streams only the events of models the caller may read"),
}
