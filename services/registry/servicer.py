"""ModelRegistryService over gRPC: a thin adapter from wire messages to the store."""
from google.protobuf import empty_pb2

from mlgrid.v1 import registry_pb2 as pb
from mlgrid.v1 import registry_pb2_grpc
from services.identity.model import REGISTERED_MODEL
from services.identity.visibility import OPEN, Visibility
from services.registry.store.sql import SqlRegistryStore

SERVICE_NAME = "mlgrid.v1.ModelRegistryService"
EMPTY = empty_pb2.Empty()


def _model(model: pb.RegisteredModel) -> pb.RegisteredModelResponse:
    return pb.RegisteredModelResponse(registered_model=model)


def _version(version: pb.ModelVersion) -> pb.ModelVersionResponse:
    return pb.ModelVersionResponse(model_version=version)


class RegistryServicer(registry_pb2_grpc.ModelRegistryServiceServicer):
    def __init__(self, store: SqlRegistryStore, visibility: Visibility = OPEN):
        self.store = store
        self.visibility = visibility

    # registered models
    async def CreateRegisteredModel(self, request, context):
        return _model(await self.store.create_registered_model(request.name, dict(request.tags), request.description))

    async def GetRegisteredModel(self, request, context):
        return _model(await self.store.get_registered_model(request.name))

    async def RenameRegisteredModel(self, request, context):
        renamed = await self.store.rename_registered_model(request.name, request.new_name)
        if self.visibility.store is not None:  # grants are by name: they follow the model
            await self.visibility.store.rename_grants_for_resource(REGISTERED_MODEL, request.name, request.new_name)
            self.visibility.forget()
        return _model(renamed)

    async def UpdateRegisteredModel(self, request, context):
        return _model(await self.store.update_registered_model(request.name, request.description))

    async def DeleteRegisteredModel(self, request, context):
        await self.store.delete_registered_model(request.name)
        if self.visibility.store is not None:  # a model created later under this name starts without them
            await self.visibility.store.delete_grants_for_resource(REGISTERED_MODEL, request.name)
            self.visibility.forget()
        return EMPTY

    async def SearchRegisteredModels(self, request, context):
        found, token = await self.store.search_registered_models(
            request.filter, request.max_results, request.order_by, request.page_token,
            self.visibility.clause(REGISTERED_MODEL),
        )
        return pb.SearchRegisteredModelsResponse(registered_models=found, next_page_token=token)

    async def SetRegisteredModelTag(self, request, context):
        await self.store.set_registered_model_tag(request.name, request.key, request.value)
        return EMPTY

    async def DeleteRegisteredModelTag(self, request, context):
        await self.store.delete_registered_model_tag(request.name, request.key)
        return EMPTY

    # model versions
    async def CreateModelVersion(self, request, context):
        return _version(await self.store.create_model_version(
            request.name, request.source, request.run_id, dict(request.tags), request.run_link, request.description,
            request.model_id,
        ))

    async def GetModelVersion(self, request, context):
        return _version(await self.store.get_model_version(request.name, request.version))

    async def UpdateModelVersion(self, request, context):
        return _version(await self.store.update_model_version(request.name, request.version, request.description))

    async def DeleteModelVersion(self, request, context):
        await self.store.delete_model_version(request.name, request.version)
        return EMPTY

    async def SearchModelVersions(self, request, context):
        found, token = await self.store.search_model_versions(
            request.filter, request.max_results, request.order_by, request.page_token,
            self.visibility.clause(REGISTERED_MODEL),
        )
        return pb.SearchModelVersionsResponse(model_versions=found, next_page_token=token)

    async def GetLatestVersions(self, request, context):
        return pb.GetLatestVersionsResponse(model_versions=await self.store.get_latest_versions(request.name, request.stages))

    async def TransitionModelVersionStage(self, request, context):
        return _version(await self.store.transition_model_version_stage(
            request.name, request.version, request.stage, request.archive_existing_versions
        ))

    async def SetModelVersionTag(self, request, context):
        await self.store.set_model_version_tag(request.name, request.version, request.key, request.value)
        return EMPTY

    async def DeleteModelVersionTag(self, request, context):
        await self.store.delete_model_version_tag(request.name, request.version, request.key)
        return EMPTY

    # aliases and URIs
    async def SetRegisteredModelAlias(self, request, context):
        await self.store.set_registered_model_alias(request.name, request.alias, request.version)
        return EMPTY

    async def DeleteRegisteredModelAlias(self, request, context):
        await self.store.delete_registered_model_alias(request.name, request.alias)
        return EMPTY

    async def GetModelVersionByAlias(self, request, context):
        return _version(await self.store.get_model_version_by_alias(request.name, request.alias))

    async def ResolveModelUri(self, request, context):
        return _version(await self.store.resolve_model_uri(request.uri))

    async def FollowModel(self, request, context):
        expires_at = await self.store.follow_model(request.name, request.follower, request.lease_seconds)
        return pb.FollowModelResponse(expires_at=expires_at)

    async def UnfollowModel(self, request, context):
        await self.store.unfollow_model(request.name, request.follower)
        return EMPTY

    # events
    async def WatchEvents(self, request, context):
        async for event in self.store.watch_events(request.after_event_id):
            if await self.visibility.may_read(REGISTERED_MODEL, event.name):
                yield event
