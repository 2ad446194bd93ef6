"""Who may call each ArtifactService method: a run's artifacts follow its experiment (READ to list and
download, EDIT to upload and delete); a proxied URI outside any run (`mlgrid-artifacts:/<path>`)
follows the experiment its first folder names, as the default artifact root lays them out
(`<experiment id>/<run id>/artifacts/...`); anywhere else only admins go."""
from google.protobuf.message import DecodeError

from mlgrid import _wire
from mlgrid.v1 import artifacts_pb2
from services.artifacts.paths import join, normalize, proxied_key, run_in_key
from services.common.errors import MlgridError
from services.identity.access import ADMIN_ONLY, Rule, custom, signed_in
from services.identity.model import EXPERIMENT, RUN, Permission

READ, EDIT = Permission.READ, Permission.EDIT


def target_resources(request):
    """The run (or experiment) the request's target is under; an upload's chunks name none (its header,
    the first message, does)."""
    if isinstance(request, bytes):  # Upload's messages arrive serialized (servicer.add_to_server)
        if _wire.chunk_of(request) is not None:
            return
        try:
            request = artifacts_pb2.UploadRequest.FromString(request)
        except DecodeError:
            return  # the servicer refuses it
    if isinstance(request, artifacts_pb2.UploadRequest):
        if request.WhichOneof("part") != "header":
            return
        target = request.header.target
    else:
        target = request.target
    if target.run_id:
        yield RUN, target.run_id
        return
    try:
        key = proxied_key(target.root_uri)
        path = normalize(target.path)
    except MlgridError:
        return  # the handler refuses it, naming what is wrong
    if key is None:
        return
    full = join(key, path)
    found = run_in_key(full)
    first = full.split("/", 1)[0]
    if found:
        yield RUN, found[0]
    elif first.isdigit():  # an experiment's folder: its logged models, for one
        yield EXPERIMENT, first
    else:
        yield ADMIN_ONLY, full or "the artifact root"

RULES: dict[str, Rule] = {
    "Upload": custom(EDIT, target_resources),  # the header (first message) names the target
    "Download": custom(READ, target_resources),
    "ListArtifacts": custom(READ, target_resources),
    "StatArtifact": custom(READ, target_resources),
    "DeleteArtifact": custom(EDIT, target_resources),
    "GetCapabilities": signed_in("says only which backend stores artifacts"),
    "CreateMultipartUpload": custom(EDIT, target_resources),
    "CompleteMultipartUpload": custom(EDIT, target_resources),
    "AbortMultipartUpload": custom(EDIT, target_resources),
    "GetDownloadUrl": custom(READ, target_resources),
}
