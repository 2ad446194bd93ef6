"""Artifact stores: a local folder, or an S3-compatible bucket."""
from services.artifacts.backends.base import Backend
from services.common.config import ArtifactsConfig


def make_backend(config: ArtifactsConfig) -> Backend:
    """The store MLGRID_ARTIFACTS_DESTINATION names, checked usable (blocking: call it in a thread)."""
    if config.is_s3:
        from services.artifacts.backends.s3 import S3Backend

        backend = S3Backend(config)
        backend.check()
        return backend
    from services.artifacts.backends.local import LocalBackend

    return LocalBackend(config.destination)
