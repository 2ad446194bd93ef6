"""Model registry methods of MlgridClient, with mlflow.MlflowClient's names and signatures,
on the ModelRegistryService reached through the client's channel."""
from __future__ import annotations

from collections.abc import Iterator

import grpc

from mlgrid.entities import ModelVersion, PagedList, RegisteredModel, RegistryEvent
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import registry_pb2 as pb


def _tags(tags: dict | None) -> dict[str, str]:
    return {k: str(v) for k, v in (tags or {}).items()}


class RegistryMethods:
    """Mixed into MlgridClient, which provides `_registry` (the stub) and `_unary`."""

    # registered models

    def create_registered_model(self, name: str, tags: dict | None = None, description: str | None = None) -> RegisteredModel:
        request = pb.CreateRegisteredModelRequest(name=name, tags=_tags(tags), description=description or "")
        return RegisteredModel.from_proto(self._unary(self._registry.CreateRegisteredModel, request, idempotent=False).registered_model)

    def get_registered_model(self, name: str) -> RegisteredModel:
        request = pb.GetRegisteredModelRequest(name=name)
        return RegisteredModel.from_proto(self._unary(self._registry.GetRegisteredModel, request, idempotent=True).registered_model)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        request = pb.RenameRegisteredModelRequest(name=name, new_name=new_name)
        return RegisteredModel.from_proto(self._unary(self._registry.RenameRegisteredModel, request, idempotent=False).registered_model)

    def update_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        request = pb.UpdateRegisteredModelRequest(name=name, description=description or "")
        return RegisteredModel.from_proto(self._unary(self._registry.UpdateRegisteredModel, request, idempotent=True).registered_model)

    def delete_registered_model(self, name: str) -> None:
        self._unary(self._registry.DeleteRegisteredModel, pb.DeleteRegisteredModelRequest(name=name), idempotent=False)

    def search_registered_models(
        self, filter_string: str | None = None, max_results: int = 100, order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        request = pb.SearchRegisteredModelsRequest(
            filter=filter_string or "", max_results=max_results, order_by=order_by or [], page_token=page_token or "",
        )
        response = self._unary(self._registry.SearchRegisteredModels, request, idempotent=True)
        return PagedList([RegisteredModel.from_proto(m) for m in response.registered_models], response.next_page_token or None)

    def iter_registered_models(self, filter_string: str | None = None, order_by: list[str] | None = None) -> Iterator[RegisteredModel]:
        """Every registered model matching the search, page by page."""
        return self._iter_pages(lambda token: self.search_registered_models(filter_string, 1000, order_by, token))

    def set_registered_model_tag(self, name: str, key: str, value) -> None:
        request = pb.SetRegisteredModelTagRequest(name=name, key=key, value=str(value))
        self._unary(self._registry.SetRegisteredModelTag, request, idempotent=True)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        request = pb.DeleteRegisteredModelTagRequest(name=name, key=key)
        self._unary(self._registry.DeleteRegisteredModelTag, request, idempotent=False)

    # model versions

    def create_model_version(
        self, name: str, source: str, run_id: str | None = None, tags: dict | None = None,
        run_link: str | None = None, description: str | None = None,
    ) -> ModelVersion:
        """Register `source` (runs:/<run_id>/<path>, mlgrid-artifacts:/..., s3://...) as the next version of `name`."""
        request = pb.CreateModelVersionRequest(
            name=name, source=source, run_id=run_id or "", tags=_tags(tags), run_link=run_link or "",
            description=description or "",
        )
        return ModelVersion.from_proto(self._unary(self._registry.CreateModelVersion, request, idempotent=False).model_version)

    def register_model(self, model_uri: str, name: str, tags: dict | None = None) -> ModelVersion:
        """`model_uri` as the next version of `name`, creating the registered model when missing
        (mlflow.register_model); the registry records the run of a runs:/<run_id>/... URI."""
        try:
            self.create_registered_model(name)
        except MlgridException as error:
            if error.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
        return self.create_model_version(name, model_uri, tags=tags)

    def get_model_version(self, name: str, version) -> ModelVersion:
        request = pb.GetModelVersionRequest(name=name, version=str(version))
        return ModelVersion.from_proto(self._unary(self._registry.GetModelVersion, request, idempotent=True).model_version)

    def update_model_version(self, name: str, version, description: str | None = None) -> ModelVersion:
        request = pb.UpdateModelVersionRequest(name=name, version=str(version), description=description or "")
        return ModelVersion.from_proto(self._unary(self._registry.UpdateModelVersion, request, idempotent=True).model_version)

    def delete_model_version(self, name: str, version) -> None:
        request = pb.DeleteModelVersionRequest(name=name, version=str(version))
        self._unary(self._registry.DeleteModelVersion, request, idempotent=False)

    def search_model_versions(
        self, filter_string: str | None = None, max_results: int = 10_000, order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        request = pb.SearchModelVersionsRequest(
            filter=filter_string or "", max_results=max_results, order_by=order_by or [], page_token=page_token or "",
        )
        response = self._unary(self._registry.SearchModelVersions, request, idempotent=True)
        return PagedList([ModelVersion.from_proto(v) for v in response.model_versions], response.next_page_token or None)

    def iter_model_versions(self, filter_string: str | None = None, order_by: list[str] | None = None) -> Iterator[ModelVersion]:
        """Every model version matching the search, page by page."""
        return self._iter_pages(lambda token: self.search_model_versions(filter_string, 1000, order_by, token))

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[ModelVersion]:
        request = pb.GetLatestVersionsRequest(name=name, stages=stages or [])
        response = self._unary(self._registry.GetLatestVersions, request, idempotent=True)
        return [ModelVersion.from_proto(v) for v in response.model_versions]

    def transition_model_version_stage(
        self, name: str, version, stage: str, archive_existing_versions: bool = False
    ) -> ModelVersion:
        request = pb.TransitionModelVersionStageRequest(
            name=name, version=str(version), stage=stage, archive_existing_versions=archive_existing_versions,
        )
        return ModelVersion.from_proto(self._unary(self._registry.TransitionModelVersionStage, request, idempotent=True).model_version)

    def set_model_version_tag(self, name: str, version, key: str, value) -> None:
        request = pb.SetModelVersionTagRequest(name=name, version=str(version), key=key, value=str(value))
        self._unary(self._registry.SetModelVersionTag, request, idempotent=True)

    def delete_model_version_tag(self, name: str, version, key: str) -> None:
        request = pb.DeleteModelVersionTagRequest(name=name, version=str(version), key=key)
        self._unary(self._registry.DeleteModelVersionTag, request, idempotent=False)

    # aliases, models:/ URIs and events

    def set_registered_model_alias(self, name: str, alias: str, version) -> None:
        request = pb.SetRegisteredModelAliasRequest(name=name, alias=alias, version=str(version))
        self._unary(self._registry.SetRegisteredModelAlias, request, idempotent=True)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        request = pb.DeleteRegisteredModelAliasRequest(name=name, alias=alias)
        self._unary(self._registry.DeleteRegisteredModelAlias, request, idempotent=False)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        request = pb.GetModelVersionByAliasRequest(name=name, alias=alias)
        return ModelVersion.from_proto(self._unary(self._registry.GetModelVersionByAlias, request, idempotent=True).model_version)

    def resolve_model_uri(self, uri: str) -> ModelVersion:
        """The version named by models:/<name>/<version>, models:/<name>/<stage>, models:/<name>/latest or models:/<name>@<alias>."""
        request = pb.ResolveModelUriRequest(uri=uri)
        return ModelVersion.from_proto(self._unary(self._registry.ResolveModelUri, request, idempotent=True).model_version)

    def follow_model(self, name: str, follower: str, lease_seconds: int = 0) -> int:
        """Declare (or renew) that `follower` serves the model, which then cannot be deleted until the
        lease (default 60 s) runs out or unfollow_model; returns when it ends (ms since the epoch)."""
        request = pb.FollowModelRequest(name=name, follower=follower, lease_seconds=lease_seconds)
        return self._unary(self._registry.FollowModel, request, idempotent=True).expires_at

    def unfollow_model(self, name: str, follower: str) -> None:
        request = pb.UnfollowModelRequest(name=name, follower=follower)
        self._unary(self._registry.UnfollowModel, request, idempotent=True)

    def watch_registry_events(self, after_event_id: int = 0) -> RegistryEventStream:
        """Every registry change stored after `after_event_id`, then each new one as it happens, until
        closed (-1: only changes from now on). To resume after a disconnect, pass the event_id of the last event received."""
        return RegistryEventStream(self._registry.WatchEvents(pb.WatchEventsRequest(after_event_id=after_event_id)))


class RegistryEventStream:
    """An endless iterator of RegistryEvent; close() (from any thread) ends it."""

    def __init__(self, call):
        self._call = call

    def __iter__(self) -> RegistryEventStream:
        return self

    def __next__(self) -> RegistryEvent:
        try:
            return RegistryEvent.from_proto(next(self._call))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise MlgridException.from_rpc_error(error) from None

    def close(self) -> None:
        self._call.cancel()

    def __enter__(self) -> RegistryEventStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
