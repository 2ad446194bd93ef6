"""GRPCInferenceService (the Open Inference Protocol over gRPC): a thin adapter to the data plane."""
from mlgrid.inference.v2 import grpc_predict_v2_pb2 as pb
from mlgrid.inference.v2 import grpc_predict_v2_pb2_grpc
from services.serving.codecs import oip
from services.serving.dataplane import SERVER_NAME, DataPlane, output_tensors, server_version

SERVICE_NAME = "inference.GRPCInferenceService"


def model_metadata(plane: DataPlane, name: str, version: str) -> dict:
    """What ModelMetadata and GET /v2/models/{name} answer."""
    model = plane.model(name, version)
    signature = model.metadata.signature
    return {
        "name": name,
        "versions": [model.version],
        "platform": f"mlgrid_{model.metadata.pyfunc_conf().get('loader_module', 'pyfunc')}" if model.metadata.pyfunc_conf() else "mlgrid",
        "inputs": oip.tensor_metadata_from_schema(signature.inputs if signature else None, "input"),
        "outputs": oip.tensor_metadata_from_schema(signature.outputs if signature else None, "output"),
    }


class InferenceServicer(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=server_version(), extensions=[])

    async def ModelMetadata(self, request, context):
        meta = model_metadata(self.plane, request.name, request.version)
        tensors = lambda entries: [pb.ModelMetadataResponse.TensorMetadata(name=n, datatype=d, shape=s) for n, d, s in entries]  # noqa: E731
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=tensors(meta["inputs"]), outputs=tensors(meta["outputs"]),
        )

    async def ModelInfer(self, request, context):
        self.plane.model(request.model_name, request.model_version)  # an unknown model is NOT_FOUND whatever the inputs
        payload = oip.decode_grpc_request(request)
        model, prediction = await self.plane.infer(request.model_name, request.model_version, payload, "grpc")
        outputs = output_tensors(prediction, payload.requested_outputs)
        return oip.encode_grpc_response(request.model_name, model.version, request.id, outputs)


def add_to_server(servicer: InferenceServicer, server) -> None:
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
