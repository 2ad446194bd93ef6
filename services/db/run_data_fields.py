"""Each param, tag and latest-metric row also keeps itself encoded as one field
of a RunData message (protobuf wire format, made by the generated code).

Concatenated, the rows of a run are a serialized RunData, so reading many runs
costs one bytes aggregate per run and one parse in C, instead of a Python
object per row: reading 30,000 runs of 300 values each is bound by this.
"""
from mlgrid.v1 import tracking_pb2 as pb


def param(key: str, value: str) -> bytes:
    return pb.RunData(params={key: value}).SerializeToString()


def tag(key: str, value: str) -> bytes:
    return pb.RunData(tags={key: value}).SerializeToString()


def metric(key: str, value: float, timestamp: int, step: int) -> bytes:
    return pb.RunData(metrics=[pb.Metric(key=key, value=value, timestamp=timestamp, step=step)]).SerializeToString()
