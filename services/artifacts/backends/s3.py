"""An S3-compatible bucket (MinIO, AWS S3, ...) as the artifact store, through the minio SDK.

Streamed uploads go up as multipart uploads, one part in memory at a time:
the object appears only when the upload completes, and a failed one is
aborted. A file's sha256 is kept as the object's user metadata
(x-amz-meta-sha256), which S3 fixes when the upload starts, so it is recorded
when the uploader announces it (or when the file fits in one part).

minio's public API has no piecewise multipart calls; the underscore methods
used here (_create_multipart_upload, _upload_part, _list_parts,
_complete_multipart_upload, _abort_multipart_upload, _list_objects) are the
ones its own put_object and list_objects are built on.
"""
import io
import itertools
import logging
import math
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from services.artifacts.backends.base import Backend, Entry, FileStat, PartUrl, Reader, UploadSink, byte_range
from services.artifacts.paths import Location, join
from services.common.config import ArtifactsConfig
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable

log = logging.getLogger("mlgrid.artifacts.s3")

MIB = 1024 * 1024
STREAM_PART_SIZE = 8 * MIB  # parts of uploads streamed through the service: one is held in memory per upload
DIRECT_PART_SIZE = 64 * MIB  # parts clients send straight to the store, in parallel
MAX_PARTS = 10_000
SHA256_META = "x-amz-meta-sha256"
DELETE_BATCH = 1000
MAX_LIST_PAGE = 999  # plus one to see whether more follow: S3 pages hold up to 1000
HTTP_CONNECTIONS = 64
# Any key of a folder sorts before this name below it: listing after it skips the folder's contents.
_AFTER_FOLDER = "\U0010ffff"
_FULL_CODES = {"XMinioStorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded", "EntityTooLarge"}


def _endpoint(url: str) -> str:
    """host:port of an endpoint URL (or of host:port itself); AWS S3 when empty."""
    if not url:
        return "s3.amazonaws.com"
    return urlparse(url).netloc if "://" in url else url


class S3Backend(Backend):
    name = "s3"
    sha256_upfront = True

    def __init__(self, config: ArtifactsConfig):
        parsed = urlparse(config.destination)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.create_bucket = config.s3_create_bucket
        if not self.bucket:
            raise FailedPrecondition(f"invalid artifacts destination {config.destination!r}: expected s3://bucket/prefix")
        self.endpoint = _endpoint(config.s3_endpoint_url)
        self.direct_transfer = config.direct_threshold_mb > 0
        self.direct_part_size = DIRECT_PART_SIZE
        self.presign_expiry = timedelta(seconds=config.presign_expiry_seconds)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=30, read=300),
            maxsize=HTTP_CONNECTIONS,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        credentials = {"access_key": config.s3_access_key_id or None, "secret_key": config.s3_secret_access_key or None}
        # The region is given, so that no call asks the store for it (presigning stays offline).
        self.client = Minio(self.endpoint, secure=config.s3_secure, region=config.s3_region, http_client=http, **credentials)
        self.presigner = self.client
        if config.s3_presign_endpoint_url:
            presign_url = config.s3_presign_endpoint_url
            self.presigner = Minio(
                _endpoint(presign_url), secure=not presign_url.startswith("http://"), region=config.s3_region, **credentials
            )

    def check(self) -> None:
        """Refuse to start without a usable bucket, saying why (make it first if create_bucket)."""
        where = f"bucket {self.bucket!r} at {self.endpoint}"
        try:
            exists = self.client.bucket_exists(self.bucket)
            if not exists and self.create_bucket:
                self.client.make_bucket(self.bucket)
                exists = True
        except S3Error as error:
            raise FailedPrecondition(
                f"cannot use the {where}: {error.code}: {error.message}. "
                "Check MLGRID_S3_ACCESS_KEY_ID, MLGRID_S3_SECRET_ACCESS_KEY and MLGRID_S3_REGION"
            ) from None
        except urllib3.exceptions.HTTPError as error:
            raise FailedPrecondition(f"cannot reach the S3 endpoint for the {where}: {error}. Check MLGRID_S3_ENDPOINT_URL") from None
        if not exists:
            raise FailedPrecondition(
                f"the {where} does not exist: create it, set MLGRID_ARTIFACTS_DESTINATION, or MLGRID_S3_CREATE_BUCKET=true"
            )

    def key(self, location: Location) -> str:
        return join(self.prefix, location.key)

    @contextmanager
    def errors(self, doing: str):
        """The store's refusals as statuses a person can act on."""
        try:
            yield
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchUpload"):
                raise NotFound(f"{doing}: {error.message}") from None
            if error.code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidArgument"):
                raise InvalidArgument(f"{doing}: {error.code}: {error.message}") from None
            if error.code in _FULL_CODES:
                raise ResourceExhausted(f"{doing}: the store is full or over quota ({error.code}: {error.message}); nothing was kept") from None
            if error.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"):
                raise FailedPrecondition(
                    f"{doing}: the S3 store refused ({error.code}: {error.message}); check the artifact service's S3 settings"
                ) from None
            raise
        except urllib3.exceptions.HTTPError as error:
            raise Unavailable(f"{doing}: the S3 store at {self.endpoint} does not answer ({error})") from None

    # uploads

    def begin_upload(self, location: Location, expected_sha256: str) -> UploadSink:
        return S3UploadSink(self, location, expected_sha256)

    def _object_headers(self, sha256: str) -> dict:
        headers = {"Content-Type": "application/octet-stream"}
        if sha256:
            headers[SHA256_META] = sha256
        return headers

    # reads

    def _stat_object(self, key: str):
        try:
            return self.client.stat_object(self.bucket, key)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return None
            raise

    def _has_children(self, key: str) -> bool:
        return next(iter(self.client._list_objects(self.bucket, delimiter="/", max_keys=1, prefix=key + "/")), None) is not None

    def stat(self, location: Location) -> FileStat | None:
        key = self.key(location)
        if not key:
            return FileStat(True)
        with self.errors(f"reading {location.path!r}"):
            found = self._stat_object(key)
            if found is not None:
                return FileStat(False, found.size, found.metadata.get(SHA256_META, ""))
            return FileStat(True) if self._has_children(key) else None

    def open_read(self, location: Location, offset: int, length: int) -> Reader:
        key = self.key(location)
        with self.errors(f"reading {location.path!r}"):
            found = self._stat_object(key) if key else None
            if found is None:
                if not key or self._has_children(key):
                    raise InvalidArgument(f"{location.path!r} is a folder: list it, or download the files in it")
                raise NotFound(f"artifact {location.path!r} does not exist")
            stat = FileStat(False, found.size, found.metadata.get(SHA256_META, ""))
            length = byte_range(stat, offset, length, location.path)
            if length == 0:
                return S3Reader(None, stat, 0)
            try:
                # If-Match: the bytes come from the object just looked at, even if it is replaced meanwhile.
                response = self.client.get_object(
                    self.bucket, key, offset=offset, length=length, request_headers={"If-Match": f'"{found.etag}"'}
                )
            except S3Error as error:
                if error.code == "PreconditionFailed":
                    raise Unavailable(f"{location.path!r} was replaced while being opened; download it again") from None
                raise
        return S3Reader(response, stat, length)

    def list_folder(self, location: Location, start_after: str, limit: int) -> tuple[list[Entry], bool]:
        key = self.key(location)
        prefix = key + "/" if key else ""
        start = prefix + start_after + (_AFTER_FOLDER if start_after.endswith("/") else "") if start_after else None
        limit = min(limit, MAX_LIST_PAGE)
        with self.errors(f"listing {location.path!r}"):
            # One S3 page of limit + 1 names: S3 sorts keys and folders together (minio yields the keys
            # of a page first), and the one past the limit only says that more follow.
            found = list(itertools.islice(
                self.client._list_objects(self.bucket, delimiter="/", max_keys=limit + 1, prefix=prefix, start_after=start),
                limit + 1,
            ))
        found.sort(key=lambda o: o.object_name)
        entries = []
        for item in found[:limit]:
            name = item.object_name[len(prefix):]
            if item.is_dir:
                entries.append(Entry(name.rstrip("/"), True))
            elif name:  # not a folder marker object (the prefix itself)
                entries.append(Entry(name, False, item.size or 0))
        return entries, len(found) > limit

    def delete(self, location: Location) -> int:
        key = self.key(location)
        count = 0
        with self.errors(f"deleting {location.path!r}"):
            if key and self._stat_object(key) is not None:
                self.client.remove_object(self.bucket, key)
                count += 1
            below = (o.object_name for o in self.client.list_objects(self.bucket, prefix=key + "/" if key else "", recursive=True))
            while batch := [DeleteObject(name) for name in itertools.islice(below, DELETE_BATCH)]:
                failures = list(self.client.remove_objects(self.bucket, batch))
                if failures:
                    raise FailedPrecondition(f"deleting {location.path!r}: the store refused {failures[0].name!r} ({failures[0].message})")
                count += len(batch)
        return count

    # direct transfers

    def create_multipart(self, location: Location, size: int, sha256: str) -> tuple[str, list[PartUrl]]:
        key = self.key(location)
        part_size = max(self.direct_part_size, math.ceil(size / MAX_PARTS / MIB) * MIB)
        with self.errors(f"starting the upload of {location.path!r}"):
            upload_id = self.client._create_multipart_upload(self.bucket, key, self._object_headers(sha256))
        parts = []
        for number, offset in enumerate(range(0, size, part_size), start=1):
            url = self.presigner.get_presigned_url(
                "PUT", self.bucket, key, expires=self.presign_expiry,
                extra_query_params={"partNumber": str(number), "uploadId": upload_id},
            )
            parts.append(PartUrl(number, url, offset, min(part_size, size - offset)))
        return upload_id, parts

    def complete_multipart(self, location: Location, upload_id: str, size: int, parts: list[tuple[int, str]]) -> FileStat:
        key = self.key(location)
        doing = f"completing the upload of {location.path!r}"
        with self.errors(doing):
            stored = {}
            marker = None
            while True:
                page = self.client._list_parts(self.bucket, key, upload_id, part_number_marker=marker)
                stored.update((p.part_number, p) for p in page.parts)
                if not page.is_truncated:
                    break
                marker = page.next_part_number_marker
            total = 0
            for number, etag in parts:
                part = stored.get(number)
                if part is None or part.etag != etag.strip('"'):
                    raise InvalidArgument(f"{doing}: part {number} was not stored with ETag {etag}; send that part again")
                total += part.size or 0
            if total != size:
                self.client._abort_multipart_upload(self.bucket, key, upload_id)
                raise InvalidArgument(
                    f"{doing}: the parts hold {total} bytes, not the {size} announced; the upload was aborted, nothing was kept"
                )
            self.client._complete_multipart_upload(self.bucket, key, upload_id, [Part(n, e.strip('"')) for n, e in parts])
            found = self._stat_object(key)
        if found is None:
            raise Unavailable(f"{doing}: the object is not visible yet; look again")
        return FileStat(False, found.size, found.metadata.get(SHA256_META, ""))

    def abort_multipart(self, location: Location, upload_id: str) -> None:
        try:
            with self.errors(f"aborting the upload of {location.path!r}"):
                self.client._abort_multipart_upload(self.bucket, self.key(location), upload_id)
        except NotFound:  # completed or aborted already
            pass

    def download_url(self, location: Location) -> tuple[str, FileStat]:
        stat = self.stat(location)
        if stat is None:
            raise NotFound(f"artifact {location.path!r} does not exist")
        if stat.is_dir:
            raise InvalidArgument(f"{location.path!r} is a folder: list it, or download the files in it")
        url = self.presigner.get_presigned_url("GET", self.bucket, self.key(location), expires=self.presign_expiry)
        return url, stat


class S3UploadSink(UploadSink):
    def __init__(self, backend: S3Backend, location: Location, expected_sha256: str):
        self._backend = backend
        self._location = location
        self._key = backend.key(location)
        self._expected_sha256 = expected_sha256
        self._buffer = bytearray()
        self._parts: list[Part] = []
        self._upload_id: str | None = None
        self._completed = False

    def _send_part(self) -> None:
        client, bucket = self._backend.client, self._backend.bucket
        with self._backend.errors(f"uploading {self._location.path!r}"):
            if self._upload_id is None:
                headers = self._backend._object_headers(self._expected_sha256)
                self._upload_id = client._create_multipart_upload(bucket, self._key, headers)
            number = len(self._parts) + 1
            etag = client._upload_part(bucket, self._key, self._buffer, None, self._upload_id, number)  # sent as it is, not copied
        self._parts.append(Part(number, etag))
        self._buffer = bytearray()

    def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) >= STREAM_PART_SIZE:
            self._send_part()

    def commit(self, size: int, sha256: str) -> None:
        client, bucket = self._backend.client, self._backend.bucket
        if self._upload_id is None:  # it fits in one part: one PUT, with the sha256 now known
            with self._backend.errors(f"storing {self._location.path!r}"):
                client.put_object(bucket, self._key, io.BytesIO(self._buffer), len(self._buffer), metadata={SHA256_META: sha256})
            self._completed = True
            return
        if self._buffer:
            self._send_part()
        with self._backend.errors(f"storing {self._location.path!r}"):
            client._complete_multipart_upload(bucket, self._key, self._upload_id, self._parts)
        self._completed = True

    def abort(self) -> None:
        upload_id, self._upload_id = self._upload_id, None
        self._buffer = bytearray()
        if upload_id is None or self._completed:
            return
        try:
            self._backend.client._abort_multipart_upload(self._backend.bucket, self._key, upload_id)
        except Exception as error:  # noqa: BLE001 - the store's lifecycle rule cleans up what this leaves
            log.warning("could not abort the upload of %s (%s): %s", self._key, upload_id, error)


class S3Reader(Reader):
    def __init__(self, response, stat: FileStat, length: int):
        self._response = response
        self.stat = stat
        self.length = self._remaining = length

    def read(self, size: int) -> bytes:
        if not self._remaining:
            return b""
        try:
            data = self._response.read(min(size, self._remaining))
        except urllib3.exceptions.HTTPError as error:
            raise Unavailable(f"reading from the S3 store failed ({error}); resume the download") from None
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response.release_conn()
