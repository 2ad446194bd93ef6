"""The artifact handler on each store — a local folder and a real S3 endpoint
(moto's server, or S3_ENDPOINT_URL) — with runs from a real tracking store:
transfers, checks, bad input, concurrency."""
import asyncio
import dataclasses
import hashlib
import os
import shutil
import time
import urllib.request
import uuid

import pytest
from conftest import unique

from services.artifacts.backends import make_backend
from services.artifacts.handlers import ArtifactHandler, Target, UploadChecks
from services.artifacts.paths import UPLOADS_DIR
from services.artifacts.resolver import StoreRunResolver
from services.common.config import ArtifactsConfig, StoreConfig
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from services.tracking.service import open_store
from services.tracking.store.base import DELETED

MIB = 1024 * 1024


@dataclasses.dataclass
class Env:
    kind: str
    store: object
    handler: ArtifactHandler
    config: ArtifactsConfig
    s3: dict | None
    tmp_path: object

    @property
    def backend(self):
        return self.handler.backend

    def leftovers(self) -> list[str]:
        """Uploads in progress the store still holds: temporary files, or S3 multipart uploads."""
        if self.kind == "local":
            return os.listdir(os.path.join(self.config.destination, UPLOADS_DIR))
        result = self.s3["client"]._list_multipart_uploads(self.s3["bucket"], prefix=self.backend.prefix + "/")
        return [u.object_name for u in result.uploads]


@pytest.fixture(params=["local", "s3"])
async def env(request, tmp_path, sqlite_template):
    shutil.copy(sqlite_template, tmp_path / "mlgrid.db")
    store = await open_store(StoreConfig(backend_store_uri=f"sqlite:///{tmp_path}/mlgrid.db", artifact_roots=[str(tmp_path)], db_auto_init=False))
    s3 = None
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_endpoint")
        config = ArtifactsConfig(
            destination=f"s3://{s3['bucket']}/{uuid.uuid4().hex}", s3_endpoint_url=s3["url"], s3_access_key_id=s3["access_key"],
            s3_secret_access_key=s3["secret_key"], s3_secure=s3["url"].startswith("https"),
        )
    else:
        config = ArtifactsConfig(destination=str(tmp_path / "artifacts"))
    backend = await asyncio.to_thread(make_backend, config)
    handler = ArtifactHandler(backend, StoreRunResolver(store, 0), 64 * MIB)
    yield Env(request.param, store, handler, config, s3, tmp_path)
    await handler.close()
    await store.close()


async def new_run(env: Env, artifact_location: str = "") -> str:
    experiment_id = await env.store.create_experiment(unique(), artifact_location, {})
    return (await env.store.create_run(experiment_id, "tester", None, [], "")).info.run_id


async def stream(data: bytes, chunk: int = 256 * 1024):
    for start in range(0, len(data), chunk):
        yield data[start:start + chunk]
        await asyncio.sleep(0)  # let concurrent uploads interleave


async def put(env: Env, target: Target, data: bytes, chunk: int = 256 * 1024, **checks):
    return await env.handler.upload(target, UploadChecks(**checks), stream(data, chunk))


async def get(env: Env, target: Target, offset: int = 0, length: int = 0) -> bytes:
    download = await env.handler.download(target, offset, length)
    return b"".join([chunk async for chunk in download.chunks()])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def eventually(check, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- transfers


async def test_upload_then_download_the_same_bytes(env):
    run_id = await new_run(env)
    data = os.urandom(3 * MIB + 17)
    stored = await put(env, Target(run_id, path="model/weights.bin"), data, chunk=MIB - 1)
    assert (stored.path, stored.size, stored.sha256) == ("model/weights.bin", len(data), sha(data))
    assert await get(env, Target(run_id, path="model/weights.bin")) == data
    info, stored_sha = await env.handler.stat(Target(run_id, path="model/weights.bin"))
    assert (info.is_dir, info.file_size, stored_sha) == (False, len(data), sha(data))
    download = await env.handler.download(Target(run_id, path="model/weights.bin"), 0, 0)
    assert (download.stat.size, download.stat.sha256, download.length) == (len(data), sha(data), len(data))
    download.close()


async def test_empty_file_and_overwrite(env):
    run_id = await new_run(env)
    target = Target(run_id, path="empty.txt")
    assert (await put(env, target, b"")).size == 0
    assert await get(env, target) == b""
    await put(env, target, b"second version")
    assert await get(env, target) == b"second version"


async def test_multipart_sized_upload_records_sha256_when_announced(env):
    """Beyond one S3 part (8 MiB) the object's sha256 is kept when the header announced it."""
    run_id = await new_run(env)
    data = os.urandom(9 * MIB)
    await put(env, Target(run_id, path="announced.bin"), data, chunk=MIB, sha256=sha(data), size=len(data))
    await put(env, Target(run_id, path="streamed.bin"), data, chunk=MIB, trailer_sha256=sha(data))
    assert (await env.handler.stat(Target(run_id, path="announced.bin")))[1] == sha(data)
    expected_unannounced = "" if env.kind == "s3" else sha(data)
    assert (await env.handler.stat(Target(run_id, path="streamed.bin")))[1] == expected_unannounced
    assert await get(env, Target(run_id, path="streamed.bin")) == data


async def test_byte_ranges(env):
    run_id = await new_run(env)
    data = bytes(range(256)) * 4000
    target = Target(run_id, path="ranges.bin")
    await put(env, target, data)
    assert await get(env, target, 1000) == data[1000:]
    assert await get(env, target, 1000, 5000) == data[1000:6000]
    assert await get(env, target, len(data) - 10, 1000) == data[-10:]  # a length past the end stops at the end
    assert await get(env, target, len(data)) == b""
    with pytest.raises(OutOfRange, match="past the end"):
        await env.handler.download(target, len(data) + 1, 0)
    with pytest.raises(InvalidArgument, match="negative"):
        await env.handler.download(target, -1, 0)


async def test_missing_files_and_folders(env):
    run_id = await new_run(env)
    await put(env, Target(run_id, path="folder/file.txt"), b"x")
    with pytest.raises(NotFound, match="does not exist"):
        await env.handler.download(Target(run_id, path="missing.txt"), 0, 0)
    with pytest.raises(NotFound, match="does not exist"):
        await env.handler.stat(Target(run_id, path="missing.txt"))
    with pytest.raises(InvalidArgument, match="is a folder"):
        await env.handler.download(Target(run_id, path="folder"), 0, 0)
    with pytest.raises(InvalidArgument, match="name a file"):
        await put(env, Target(run_id, path=""), b"x")


async def test_a_file_and_a_folder_cannot_share_a_path_on_the_local_store(env):
    if env.kind != "local":
        pytest.skip("S3 keys may be both an object and a prefix")
    run_id = await new_run(env)
    await put(env, Target(run_id, path="model"), b"a file")
    with pytest.raises(FailedPrecondition, match="cannot share a path"):
        await put(env, Target(run_id, path="model/weights.bin"), b"x")
    await put(env, Target(run_id, path="dir/file"), b"x")
    with pytest.raises(FailedPrecondition, match="is a folder"):
        await put(env, Target(run_id, path="dir"), b"x")
    await eventually(lambda: env.leftovers() == [])


# ---------------------------------------------------------------- listing, stat, delete


async def test_list_one_level_sorted_and_paged(env):
    run_id = await new_run(env)
    for path, data in [("c.txt", b"ccc"), ("a.txt", b"a"), ("b/x", b"xx"), ("b/y", b"y"), ("d/e/f", b"f")]:
        await put(env, Target(run_id, path=path), data)
    files, token = await env.handler.list_folder(Target(run_id), 0, "")
    assert [(f.path, f.is_dir, f.file_size) for f in files] == [
        ("a.txt", False, 1), ("b", True, 0), ("c.txt", False, 3), ("d", True, 0)
    ]
    assert token == ""
    files, _ = await env.handler.list_folder(Target(run_id, path="b"), 0, "")
    assert [(f.path, f.file_size) for f in files] == [("b/x", 2), ("b/y", 1)]
    files, _ = await env.handler.list_folder(Target(run_id, path="d"), 0, "")
    assert [(f.path, f.is_dir) for f in files] == [("d/e", True)]
    paged, token = [], ""
    while True:
        page, token = await env.handler.list_folder(Target(run_id), 1, token)
        paged.extend(f.path for f in page)
        if not token:
            break
    assert paged == ["a.txt", "b", "c.txt", "d"]
    assert (await env.handler.list_folder(Target(run_id, path="nothing-here"), 0, "")) == ([], "")
    assert (await env.handler.list_folder(Target(run_id, path="a.txt"), 0, "")) == ([], "")
    with pytest.raises(InvalidArgument, match="page_token"):
        await env.handler.list_folder(Target(run_id), 0, "%%%")
    with pytest.raises(InvalidArgument, match="max_results"):
        await env.handler.list_folder(Target(run_id), 10_001, "")


async def test_stat_and_delete(env):
    run_id = await new_run(env)
    for path in ("keep.txt", "dir/a", "dir/sub/b"):
        await put(env, Target(run_id, path=path), b"data")
    info, _ = await env.handler.stat(Target(run_id, path="dir"))
    assert info.is_dir
    assert await env.handler.delete(Target(run_id, path="dir")) == 2
    assert await env.handler.delete(Target(run_id, path="keep.txt")) == 1
    assert await env.handler.delete(Target(run_id, path="keep.txt")) == 0
    assert (await env.handler.list_folder(Target(run_id), 0, "")) == ([], "")
    with pytest.raises(InvalidArgument, match="whole artifact store"):
        await env.handler.delete(Target(root_uri="mlgrid-artifacts:/"))


# ---------------------------------------------------------------- integrity: nothing partial is ever visible


@pytest.mark.parametrize("size", [64 * 1024, 9 * MIB], ids=["one-part", "multipart"])
async def test_wrong_announced_size_or_sha256_keeps_nothing(env, size):
    run_id = await new_run(env)
    data = os.urandom(size)
    target = Target(run_id, path="checked.bin")
    cases = [
        ({"size": len(data) - 1}, "more than the"),
        ({"size": len(data) + 1}, "were announced"),
        ({"sha256": sha(b"other")}, "announced in the header"),
        ({"trailer_sha256": sha(b"other")}, "the client computed"),
    ]
    for checks, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            await put(env, target, data, chunk=MIB, **checks)
        with pytest.raises(NotFound):
            await env.handler.stat(target)
    with pytest.raises(InvalidArgument, match="expected_sha256"):
        await put(env, target, data, sha256="not-a-sum")
    await eventually(lambda: env.leftovers() == [])


async def test_an_upload_that_breaks_off_leaves_nothing(env):
    run_id = await new_run(env)
    target = Target(run_id, path="interrupted.bin")
    await put(env, target, b"the previous version")

    async def breaks_off():
        for _ in range(10):
            yield os.urandom(MIB)
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await env.handler.upload(target, UploadChecks(), breaks_off())
    assert await get(env, target) == b"the previous version"
    await eventually(lambda: env.leftovers() == [])


async def test_concurrent_uploads_of_one_path_end_with_one_whole_file(env):
    run_id = await new_run(env)
    target = Target(run_id, path="contended.bin")
    payloads = [bytes([i]) * (MIB + i * 1000) for i in range(8)]
    await asyncio.gather(*(put(env, target, p, chunk=64 * 1024) for p in payloads))
    stored = await get(env, target)
    assert stored in payloads
    info, stored_sha = await env.handler.stat(target)
    assert info.file_size == len(stored) and stored_sha == sha(stored)
    await eventually(lambda: env.leftovers() == [])


async def test_many_parallel_uploads_and_downloads(env):
    run_id = await new_run(env)
    payloads = {f"parallel/{i}.bin": os.urandom(200_000 + i) for i in range(16)}
    await asyncio.gather(*(put(env, Target(run_id, path=p), d) for p, d in payloads.items()))
    downloaded = await asyncio.gather(*(get(env, Target(run_id, path=p)) for p in payloads))
    assert downloaded == list(payloads.values())


# ---------------------------------------------------------------- paths and runs


BAD_PATHS = ["../escape.txt", "a/../../other_run/x", "/etc/passwd", "a\\b.txt", "nul\x00byte", f"{UPLOADS_DIR}/x", "a/../b"]


@pytest.mark.parametrize("bad", BAD_PATHS)
async def test_path_attacks_are_invalid_argument(env, bad):
    run_id = await new_run(env)
    target = Target(run_id, path=bad)
    with pytest.raises(InvalidArgument):
        await put(env, target, b"x")
    with pytest.raises(InvalidArgument):
        await env.handler.download(target, 0, 0)
    with pytest.raises(InvalidArgument):
        await env.handler.list_folder(target, 0, "")
    with pytest.raises(InvalidArgument):
        await env.handler.stat(target)
    with pytest.raises(InvalidArgument):
        await env.handler.delete(target)
    with pytest.raises(InvalidArgument):
        await put(env, Target(root_uri=f"mlgrid-artifacts:/0/{run_id}/artifacts", path=bad), b"x")


async def test_a_run_cannot_reach_another_runs_folder(env):
    run_a, run_b = await new_run(env), await new_run(env)
    b_info = (await env.store.get_run(run_b)).info
    await put(env, Target(run_b, path="secret.txt"), b"b's data")
    with pytest.raises(InvalidArgument):
        await get(env, Target(run_a, path=f"../../{b_info.experiment_id}/{run_b}/artifacts/secret.txt"))
    # A root URI naming run B's folder under another experiment is not run B's folder.
    with pytest.raises(InvalidArgument, match="is not the artifact folder"):
        await put(env, Target(root_uri=f"mlgrid-artifacts:/0/{run_b}/artifacts", path="x"), b"x")
    # The right URI is run B's folder, with run B's checks.
    assert await get(env, Target(root_uri=b_info.artifact_uri, path="secret.txt")) == b"b's data"
    assert await get(env, Target(root_uri=f"mlgrid-artifacts:/{b_info.experiment_id}", path=f"{run_b}/artifacts/secret.txt")) == b"b's data"
    with pytest.raises(NotFound):
        await put(env, Target(root_uri=f"mlgrid-artifacts:/0/{uuid.uuid4().hex}/artifacts", path="x"), b"x")


async def test_unknown_and_deleted_runs(env):
    with pytest.raises(NotFound, match="does not exist"):
        await put(env, Target(uuid.uuid4().hex, path="x"), b"x")
    with pytest.raises(NotFound):
        await env.handler.download(Target(uuid.uuid4().hex, path="x"), 0, 0)
    with pytest.raises(InvalidArgument, match="invalid run id"):
        await put(env, Target("not-a-run", path="x"), b"x")
    with pytest.raises(InvalidArgument, match="name the run"):
        await put(env, Target(path="x"), b"x")
    run_id = await new_run(env)
    await put(env, Target(run_id, path="before.txt"), b"kept")
    await env.store.set_run_lifecycle(run_id, DELETED)
    with pytest.raises(FailedPrecondition, match="is deleted"):
        await put(env, Target(run_id, path="after.txt"), b"x")
    with pytest.raises(FailedPrecondition, match="is deleted"):
        await env.handler.delete(Target(run_id, path="before.txt"))
    assert await get(env, Target(run_id, path="before.txt")) == b"kept"  # reading stays allowed


async def test_a_run_whose_artifacts_live_elsewhere_is_not_proxied(env):
    run_id = await new_run(env, artifact_location="s3://another-bucket/team")
    with pytest.raises(FailedPrecondition, match="s3://another-bucket/team"):
        await put(env, Target(run_id, path="x"), b"x")
    with pytest.raises(InvalidArgument, match="unsupported artifact root URI"):
        await put(env, Target(root_uri="s3://another-bucket/team", path="x"), b"x")


async def test_symbolic_links_leaving_the_run_folder(env):
    if env.kind != "local":
        pytest.skip("symbolic links exist on the local store only")
    run_id, other = await new_run(env), await new_run(env)
    await put(env, Target(run_id, path="inside/real.txt"), b"mine")
    await put(env, Target(other, path="secret.txt"), b"theirs")
    info = (await env.store.get_run(run_id)).info
    other_info = (await env.store.get_run(other)).info
    run_folder = os.path.join(env.config.destination, info.experiment_id, run_id, "artifacts")
    other_folder = os.path.join(env.config.destination, other_info.experiment_id, other, "artifacts")
    os.symlink(other_folder, os.path.join(run_folder, "escape"))
    os.symlink(os.path.join(run_folder, "inside"), os.path.join(run_folder, "alias"))
    for call in (
        lambda: get(env, Target(run_id, path="escape/secret.txt")),
        lambda: put(env, Target(run_id, path="escape/planted.txt"), b"x"),
        lambda: env.handler.stat(Target(run_id, path="escape")),
        lambda: env.handler.delete(Target(run_id, path="escape/secret.txt")),
    ):
        with pytest.raises(InvalidArgument, match="symbolic link"):
            await call()
    assert not os.path.exists(os.path.join(other_folder, "planted.txt"))
    assert os.path.exists(os.path.join(other_folder, "secret.txt"))
    files, _ = await env.handler.list_folder(Target(run_id), 0, "")
    assert [f.path for f in files] == ["alias", "inside"]  # the link that leaves is not listed
    assert await get(env, Target(run_id, path="alias/real.txt")) == b"mine"


# ---------------------------------------------------------------- direct transfers


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


async def test_capabilities(env):
    capabilities = env.handler.capabilities()
    assert capabilities["backend"] == env.kind
    assert capabilities["direct_transfer"] == (env.kind == "s3")
    assert capabilities["sha256_upfront"] == (env.kind == "s3")


async def test_direct_multipart_upload_and_download_url(env):
    run_id = await new_run(env)
    target = Target(run_id, path="big/model.bin")
    data = os.urandom(11 * MIB)
    if env.kind == "local":
        with pytest.raises(FailedPrecondition, match="no direct transfers"):
            await env.handler.create_multipart(target, len(data), sha(data))
        return
    env.backend.direct_part_size = 5 * MIB
    upload_id, parts = await env.handler.create_multipart(target, len(data), sha(data))
    assert [(p.offset, p.size) for p in parts] == [(0, 5 * MIB), (5 * MIB, 5 * MIB), (10 * MIB, MIB)]
    etags = []
    for part in parts:
        status, headers, _ = await asyncio.to_thread(http, "PUT", part.url, data[part.offset:part.offset + part.size])
        etags.append((part.part_number, headers["ETag"]))
    with pytest.raises(NotFound):
        await env.handler.stat(target)  # nothing visible before completion
    stored = await env.handler.complete_multipart(target, upload_id, len(data), etags)
    assert (stored.size, stored.sha256) == (len(data), sha(data))
    url, stat = await env.handler.download_url(target)
    assert (stat.size, stat.sha256) == (len(data), sha(data))
    assert (await asyncio.to_thread(http, "GET", url))[2] == data
    assert await get(env, target) == data


async def test_direct_upload_checks(env):
    if env.kind == "local":
        pytest.skip("the local store has no direct transfers")
    run_id = await new_run(env)
    target = Target(run_id, path="short.bin")
    data = os.urandom(MIB)
    with pytest.raises(InvalidArgument, match="sha256 of the whole file is required"):
        await env.handler.create_multipart(target, len(data), "")
    upload_id, parts = await env.handler.create_multipart(target, len(data) + 10, sha(data))
    _, headers, _ = await asyncio.to_thread(http, "PUT", parts[0].url, data)  # 10 bytes short
    with pytest.raises(InvalidArgument, match="not the .* announced"):
        await env.handler.complete_multipart(target, upload_id, len(data) + 10, [(1, headers["ETag"])])
    with pytest.raises(NotFound):
        await env.handler.stat(target)
    upload_id, _ = await env.handler.create_multipart(target, len(data), sha(data))
    await env.handler.abort_multipart(target, upload_id)
    with pytest.raises(NotFound):
        await env.handler.complete_multipart(target, upload_id, len(data), [(1, headers["ETag"])])
    with pytest.raises(InvalidArgument, match="numbered"):
        await env.handler.complete_multipart(target, upload_id, len(data), [(2, "x")])
    await env.store.set_run_lifecycle(run_id, DELETED)
    with pytest.raises(FailedPrecondition, match="is deleted"):
        await env.handler.create_multipart(target, len(data), sha(data))
    await eventually(lambda: env.leftovers() == [])
