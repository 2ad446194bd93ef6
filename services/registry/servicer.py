"""ModelRegistryService over gRPC: a thin adapter from wire messages to the store."""
from google.protobuf import empty_pb2

from mlgrid.v1 import registry_pb2 as pb
from mlgrid.v1 import registry_pb2_grpc
from services.common.errors import grpc_errors
from services.registry.store.sql import SqlRegistryStore

SERVICE_NAME = "mlgrid.v1.ModelRegistryService"
EMPTY = empty_pb2.Empty()


def _model(model: pb.RegisteredModel) -> pb.RegisteredModelResponse:
    return pb.RegisteredModelResponse(registered_model=model)


def _version(version: pb.ModelVersion) -> pb.ModelVersionResponse:
    return pb.ModelVersionResponse(model_version=version)


class RegistryServicer(registry_pb2_grpc.ModelRegistryServiceServicer):
    def __init__(self, store: SqlRegistryStore):
        self.store = store

    # registered models
    @grpc_errors
    async def CreateRegisteredModel(self, request, context):
        return _model(await self.store.create_registered_model(request.name, dict(request.tags), request.description))

    @grpc_errors
    async def GetRegisteredModel(self, request, context):
        return _model(await self.store.get_registered_model(request.name))

    @grpc_errors
    async def RenameRegisteredModel(self, request, context):
        return _model(await self.store.rename_registered_model(request.name, request.new_name))

    @grpc_errors
    async def UpdateRegisteredModel(self, request, context):
        return _model(await self.store.update_registered_model(request.name, request.description))

    @grpc_errors
    async def DeleteRegisteredModel(self, request, context):
        await self.store.delete_registered_model(request.name)
        return EMPTY

    @grpc_errors
    async def SearchRegisteredModels(self, request, context):
        found, token = await self.store.search_registered_models(
            request.filter, request.max_results, request.order_by, request.page_token
        )
        return pb.SearchRegisteredModelsResponse(registered_models=found, next_page_token=token)

    @grpc_errors
    async def SetRegisteredModelTag(self, request, context):
        await self.store.set_registered_model_tag(request.name, request.key, request.value)
        return EMPTY

    @grpc_errors
    async def DeleteRegisteredModelTag(self, request, context):
        await self.store.delete_registered_model_tag(request.name, request.key)
        return EMPTY

    # model versions
    @grpc_errors
    async def CreateModelVersion(self, request, context):
        return _version(await self.store.create_model_version(
            request.name, request.source, request.run_id, dict(request.tags), request.run_link, request.description,
            request.model_id,
        ))

    @grpc_errors
    async def GetModelVersion(self, request, context):
        return _version(await self.store.get_model_version(request.name, request.version))

    @grpc_errors
    async def UpdateModelVersion(self, request, context):
        return _version(await self.store.update_model_version(request.name, request.version, request.description))

    @grpc_errors
    async def DeleteModelVersion(self, request, context):
        await self.store.delete_model_version(request.name, request.version)
        return EMPTY

    @grpc_errors
    async def SearchModelVersions(self, request, context):
        found, token = await self.store.search_model_versions(
            request.filter, request.max_results, request.order_by, request.page_token
        )
        return pb.SearchModelVersionsResponse(model_versions=found, next_page_token=token)

    @grpc_errors
    async def GetLatestVersions(self, request, context):
        return pb.GetLatestVersionsResponse(model_versions=await self.store.get_latest_versions(request.name, request.stages))

    @grpc_errors
    async def TransitionModelVersionStage(self, request, context):
        return _version(await self.store.transition_model_version_stage(
            request.name, request.version, request.stage, request.archive_existing_versions
        ))

    @grpc_errors
    async def SetModelVersionTag(self, request, context):
        await self.store.set_model_version_tag(request.name, request.version, request.key, request.value)
        return EMPTY

    @grpc_errors
    async def DeleteModelVersionTag(self, request, context):
        await self.store.delete_model_version_tag(request.name, request.version, request.key)
        return EMPTY

    # aliases and URIs
    @grpc_errors
    async def SetRegisteredModelAlias(self, request, context):
        await self.store.set_registered_model_alias(request.name, request.alias, request.version)
        return EMPTY

    @grpc_errors
    async def DeleteRegisteredModelAlias(self, request, context):
        await self.store.delete_registered_model_alias(request.name, request.alias)
        return EMPTY

    @grpc_errors
    async def GetModelVersionByAlias(self, request, context):
        return _version(await self.store.get_model_version_by_alias(request.name, request.alias))

    @grpc_errors
    async def ResolveModelUri(self, request, context):
        return _version(await self.store.resolve_model_uri(request.uri))

    @grpc_errors
    async def FollowModel(self, request, context):
        expires_at = await self.store.follow_model(request.name, request.follower, request.lease_seconds)
        return pb.FollowModelResponse(expires_at=expires_at)

    @grpc_errors
    async def UnfollowModel(self, request, context):
        await self.store.unfollow_model(request.name, request.follower)
        return EMPTY

    # events
    @grpc_errors
    async def WatchEvents(self, request, context):
        async for event in self.store.watch_events(request.after_event_id):
            yield event
