"""The bulk messages of artifact transfers in their wire form, without protobuf's copies.

A chunk is field 2 (`bytes chunk`) of both UploadRequest and DownloadResponse:
on the wire, the byte 0x12, the length as a varint, then the bytes. Building or
reading that directly saves copying every chunk into and out of a protobuf
message (measured: a third more download throughput here). Headers and
trailers go through protobuf as usual.
"""
from __future__ import annotations

CHUNK_TAG = 0x12  # field 2, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def chunk_message(data: bytes) -> bytes:
    """A serialized UploadRequest or DownloadResponse holding `data` as its chunk."""
    return b"".join((b"\x12", _varint(len(data)), data))


def serialize(message) -> bytes:
    """A message: already serialized (a chunk_message), or a protobuf message."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def chunk_of(raw: bytes) -> memoryview | None:
    """The chunk of a serialized message that holds a chunk and nothing else, as a view into `raw`;
    None for any other message (a header, a trailer), to be parsed with protobuf."""
    if len(raw) < 2 or raw[0] != CHUNK_TAG:
        return None
    length, shift, position = 0, 0, 1
    while True:
        if position == len(raw) or shift > 63:
            return None
        byte = raw[position]
        position += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if position + length != len(raw):
        return None
    return memoryview(raw)[position:]


def transfer_calls(channel):
    """The ArtifactService's Upload and Download on `channel` (grpc or grpc.aio), carrying chunks in
    their wire form: Upload takes chunk_message()s (and protobuf messages), Download yields the raw
    serialized responses, for chunk_of()."""
    from mlgrid.v1 import artifacts_pb2 as pb

    upload = channel.stream_unary(
        "/mlgrid.v1.ArtifactService/Upload", request_serializer=serialize, response_deserializer=pb.UploadResponse.FromString,
    )
    download = channel.unary_stream(
        "/mlgrid.v1.ArtifactService/Download", request_serializer=pb.DownloadRequest.SerializeToString,
        response_deserializer=None,
    )
    return upload, download
