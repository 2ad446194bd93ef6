from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ArtifactTarget(_message.Message):
    __slots__ = ("run_id", "root_uri", "path")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_URI_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    root_uri: str
    path: str
    def __init__(self, run_id: _Optional[str] = ..., root_uri: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ("path", "is_dir", "file_size")
    PATH_FIELD_NUMBER: _ClassVar[int]
    IS_DIR_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    path: str
    is_dir: bool
    file_size: int
    def __init__(self, path: _Optional[str] = ..., is_dir: _Optional[bool] = ..., file_size: _Optional[int] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("target", "expected_size", "expected_sha256")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    expected_size: int
    expected_sha256: str
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ..., expected_size: _Optional[int] = ..., expected_sha256: _Optional[str] = ...) -> None: ...

class UploadTrailer(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    def __init__(self, sha256: _Optional[str] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "chunk", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    trailer: UploadTrailer
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., trailer: _Optional[_Union[UploadTrailer, _Mapping]] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("path", "size", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("target", "offset", "length")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    offset: int
    length: int
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class DownloadHeader(_message.Message):
    __slots__ = ("total_size", "sha256", "offset", "length")
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    total_size: int
    sha256: str
    offset: int
    length: int
    def __init__(self, total_size: _Optional[int] = ..., sha256: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class DownloadResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: DownloadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[DownloadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("target", "max_results", "page_token")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    max_results: int
    page_token: str
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ..., max_results: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("files", "next_page_token")
    FILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[FileInfo]
    next_page_token: str
    def __init__(self, files: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StatArtifactRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ...) -> None: ...

class StatArtifactResponse(_message.Message):
    __slots__ = ("file", "sha256")
    FILE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    file: FileInfo
    sha256: str
    def __init__(self, file: _Optional[_Union[FileInfo, _Mapping]] = ..., sha256: _Optional[str] = ...) -> None: ...

class DeleteArtifactRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ...) -> None: ...

class DeleteArtifactResponse(_message.Message):
    __slots__ = ("deleted_files",)
    DELETED_FILES_FIELD_NUMBER: _ClassVar[int]
    deleted_files: int
    def __init__(self, deleted_files: _Optional[int] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("backend", "direct_transfer", "direct_threshold_bytes", "sha256_upfront")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DIRECT_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    DIRECT_THRESHOLD_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_UPFRONT_FIELD_NUMBER: _ClassVar[int]
    backend: str
    direct_transfer: bool
    direct_threshold_bytes: int
    sha256_upfront: bool
    def __init__(self, backend: _Optional[str] = ..., direct_transfer: _Optional[bool] = ..., direct_threshold_bytes: _Optional[int] = ..., sha256_upfront: _Optional[bool] = ...) -> None: ...

class CreateMultipartUploadRequest(_message.Message):
    __slots__ = ("target", "size", "sha256")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    size: int
    sha256: str
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class PresignedPart(_message.Message):
    __slots__ = ("part_number", "url", "offset", "size")
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    part_number: int
    url: str
    offset: int
    size: int
    def __init__(self, part_number: _Optional[int] = ..., url: _Optional[str] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class CreateMultipartUploadResponse(_message.Message):
    __slots__ = ("upload_id", "parts")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    parts: _containers.RepeatedCompositeFieldContainer[PresignedPart]
    def __init__(self, upload_id: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[PresignedPart, _Mapping]]] = ...) -> None: ...

class CompletedPart(_message.Message):
    __slots__ = ("part_number", "etag")
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    part_number: int
    etag: str
    def __init__(self, part_number: _Optional[int] = ..., etag: _Optional[str] = ...) -> None: ...

class CompleteMultipartUploadRequest(_message.Message):
    __slots__ = ("target", "upload_id", "parts", "size")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    upload_id: str
    parts: _containers.RepeatedCompositeFieldContainer[CompletedPart]
    size: int
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ..., upload_id: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[CompletedPart, _Mapping]]] = ..., size: _Optional[int] = ...) -> None: ...

class AbortMultipartUploadRequest(_message.Message):
    __slots__ = ("target", "upload_id")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    upload_id: str
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ..., upload_id: _Optional[str] = ...) -> None: ...

class AbortMultipartUploadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDownloadUrlRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: ArtifactTarget
    def __init__(self, target: _Optional[_Union[ArtifactTarget, _Mapping]] = ...) -> None: ...

class GetDownloadUrlResponse(_message.Message):
    __slots__ = ("url", "total_size", "sha256")
    URL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    url: str
    total_size: int
    sha256: str
    def __init__(self, url: _Optional[str] = ..., total_size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...
