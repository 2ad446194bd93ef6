"""The models a serving process serves, by name: each loaded from its URI into its own workers and
batcher. A model named by a registry alias, stage or `latest` follows it: the registry's events
trigger a re-resolution, the new version loads in the background and replaces the old one in one
step; requests that already hold the old version finish on it before it is unloaded. While a
model is served from the registry, the process holds a renewed follow lease on it, so the model
cannot be deleted from under it."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass

from prometheus_client import Histogram

from mlgrid.client import MlgridClient
from mlgrid.exceptions import MlgridException
from mlgrid.models import Model
from mlgrid.models.uri import download_model
from services.common.errors import InvalidArgument, MlgridError, NotFound, Unavailable, from_status
from services.serving.batching import Batcher
from services.serving.payload import Payload, Prediction
from services.serving.workers import WorkerPool

log = logging.getLogger("mlgrid.serving")
LOAD_SECONDS = Histogram(
    "mlgrid_serving_model_load_seconds", "time to download and load a model version", ["model"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
_PINNED_VERSION = re.compile(r"^models:/[^/@]+/\d+$")
WATCH_RETRY_SECONDS = 2


@dataclass(frozen=True)
class ModelSpec:
    name: str
    uri: str
    workers: int = 1
    max_batch_size: int = 32
    max_batch_wait_ms: float = 0


def _follows_registry(uri: str) -> bool:
    """Whether the URI names a moving target: an alias, a stage or latest (not a version number)."""
    return uri.startswith("models:/") and not _PINNED_VERSION.match(uri)


def registered_model_name(uri: str) -> str:
    return re.split(r"[/@]", uri[len("models:/"):], maxsplit=1)[0]


class LoadedVersion:
    """One version of a model in memory: its folder, metadata, workers and batcher."""

    def __init__(self, name: str, version: str, model_dir: str, pool: WorkerPool, batcher: Batcher, temporary: bool):
        self.name = name
        self.version = version
        self.model_dir = model_dir
        self.metadata = Model.load(model_dir)
        self.pool = pool
        self.batcher = batcher
        self._temporary = temporary
        self._active = 0

    async def predict(self, payload: Payload) -> Prediction:
        self._active += 1
        try:
            return await self.batcher.predict(payload)
        finally:
            self._active -= 1

    async def unload(self, wait_seconds: float = 30) -> None:
        """After every request that holds this version has its answer (or `wait_seconds`)."""
        deadline = time.monotonic() + wait_seconds
        while self._active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.batcher.close()
        await self.pool.close()
        if self._temporary:
            shutil.rmtree(self.model_dir, ignore_errors=True)


class ServedModel:
    def __init__(self, spec: ModelSpec, tracking_uri: str | None, follower: str, lease_seconds: int):
        self.spec = spec
        self.current: LoadedVersion | None = None
        self._tracking_uri = tracking_uri
        self._follower = follower
        self._lease_seconds = lease_seconds
        self._tasks: list[asyncio.Task] = []
        self._reload_lock = asyncio.Lock()
        self._stopping = threading.Event()
        self._watch_stream = None

    @property
    def registered_name(self) -> str | None:
        return registered_model_name(self.spec.uri) if self.spec.uri.startswith("models:/") else None

    def _client(self) -> MlgridClient:
        return MlgridClient(self._tracking_uri)

    def _resolve(self) -> tuple[str, str]:
        """(version label, URI to download) of what the spec names now."""
        if not self.spec.uri.startswith("models:/"):
            return "1", self.spec.uri
        with self._client() as client:
            version = client.resolve_model_uri(self.spec.uri).version
        return version, f"models:/{registered_model_name(self.spec.uri)}/{version}"

    async def _load(self, version: str, uri: str) -> LoadedVersion:
        started = time.monotonic()
        local = not re.match(r"^[a-z][a-z0-9+.-]*:", uri) or uri.startswith("file:")
        target = None if local else tempfile.mkdtemp(prefix=f"mlgrid-serving-{self.spec.name}-")
        try:
            model_dir = await asyncio.to_thread(download_model, uri, target, self._tracking_uri)
            pool = WorkerPool(model_dir, self.spec.workers, self.spec.name)
            await pool.start()
        except MlgridException as error:
            raise from_status(error.code, error.message) from None
        except BaseException:
            if target:
                shutil.rmtree(target, ignore_errors=True)
            raise
        batcher = Batcher(pool, self.spec.name, self.spec.max_batch_size, self.spec.max_batch_wait_ms)
        loaded = LoadedVersion(self.spec.name, version, model_dir, pool, batcher, temporary=target is not None)
        LOAD_SECONDS.labels(self.spec.name).observe(time.monotonic() - started)
        log.info("model %s version %s loaded from %s in %.1fs", self.spec.name, version, uri, time.monotonic() - started)
        return loaded

    async def start(self) -> None:
        version, uri = await asyncio.to_thread(self._resolve_or_raise)
        if self.registered_name:
            await asyncio.to_thread(self._follow)
            self._tasks.append(asyncio.create_task(self._renew_lease()))
        self.current = await self._load(version, uri)
        if _follows_registry(self.spec.uri):
            self._tasks.append(asyncio.create_task(self._watch()))

    def _resolve_or_raise(self) -> tuple[str, str]:
        try:
            return self._resolve()
        except MlgridException as error:
            raise from_status(error.code, error.message) from None

    async def reload_if_moved(self) -> None:
        """Re-resolve the URI; when it names another version now, load it and swap it in."""
        async with self._reload_lock:
            try:
                version, uri = await asyncio.to_thread(self._resolve)
            except MlgridException as error:
                log.warning("model %s: %s no longer resolves (%s); still serving version %s",
                            self.spec.name, self.spec.uri, error.message, self.current.version if self.current else "-")
                return
            if self.current is not None and version == self.current.version:
                return
            log.info("model %s: %s now names version %s; loading it", self.spec.name, self.spec.uri, version)
            try:
                new = await self._load(version, uri)
            except MlgridError as error:
                log.error("model %s: version %s does not load (%s); still serving the previous one", self.spec.name, version, error.message)
                return
            old, self.current = self.current, new  # one assignment: every request from here on gets the new version
            if old is not None:
                await old.unload()

    def _follow(self) -> None:
        try:
            with self._client() as client:
                client.follow_model(self.registered_name, self._follower, self._lease_seconds)
        except MlgridException as error:
            log.warning("model %s: cannot take the follow lease (%s)", self.spec.name, error.message)

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self._lease_seconds / 3))
            await asyncio.to_thread(self._follow)

    def _watch_events(self, loop: asyncio.AbstractEventLoop, changed: asyncio.Event) -> None:
        """In a thread: follow the registry's events about this model, resuming after disconnects."""
        name, after = self.registered_name, -1
        while not self._stopping.is_set():
            try:
                with self._client() as client:
                    self._watch_stream = client.watch_registry_events(after)
                    loop.call_soon_threadsafe(changed.set)  # whatever changed before the watch began
                    for event in self._watch_stream:
                        after = event.event_id
                        if event.name == name or event.details.get("old_name") == name:
                            loop.call_soon_threadsafe(changed.set)
            except MlgridException as error:
                if self._stopping.is_set():
                    return
                log.warning("model %s: registry events interrupted (%s); watching again", self.spec.name, error.message)
            self._stopping.wait(WATCH_RETRY_SECONDS)

    async def _watch(self) -> None:
        changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        watcher = threading.Thread(target=self._watch_events, args=(loop, changed), daemon=True, name=f"mlgrid-watch-{self.spec.name}")
        watcher.start()
        while True:
            await changed.wait()
            changed.clear()
            await self.reload_if_moved()

    async def stop(self) -> None:
        self._stopping.set()
        if self._watch_stream is not None:
            self._watch_stream.close()
        for task in self._tasks:
            task.cancel()
        if self.registered_name:
            try:
                await asyncio.to_thread(self._unfollow)
            except MlgridException as error:
                log.warning("model %s: cannot release the follow lease (%s)", self.spec.name, error.message)
        if self.current is not None:
            await self.current.unload()

    def _unfollow(self) -> None:
        with self._client() as client:
            client.unfollow_model(self.registered_name, self._follower)


def default_follower() -> str:
    return os.environ.get("HOSTNAME") or f"{socket.gethostname()}-{os.getpid()}"


class ModelRepository:
    def __init__(self, specs: list[ModelSpec], tracking_uri: str | None, follower: str | None = None, lease_seconds: int = 60):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"two models are served under one name: {names}; give each its own name")
        self.models = {s.name: ServedModel(s, tracking_uri, follower or default_follower(), lease_seconds) for s in specs}

    async def start(self) -> None:
        await asyncio.gather(*(model.start() for model in self.models.values()))

    @property
    def ready(self) -> bool:
        return all(model.current is not None for model in self.models.values())

    def get(self, name: str, version: str = "") -> LoadedVersion:
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"no model named {name!r} is served here; served: {sorted(self.models)}")
        current = model.current
        if current is None:
            raise Unavailable(f"model {name!r} is still loading; retry shortly")
        if version and version != current.version:
            raise NotFound(f"model {name!r} serves version {current.version}, not {version!r}")
        return current

    async def stop(self) -> None:
        await asyncio.gather(*(model.stop() for model in self.models.values()))
