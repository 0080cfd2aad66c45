"""ModelManager: which models exist, which are loaded, and loading them on demand.

Models come from the store (re-read on each lookup, so a `pull` shows up without a restart),
from paths given to `serve --model`, and the embedded default when nothing else is there.

Lifecycle rules:
- A request pins its model from the moment it asks for it (`acquire`) until it ends
  (`release`), also while the model is still loading or waiting for room. Only a loaded model
  that nobody pins and whose runner is idle may be evicted (for room, by keep-alive, or by
  `keep_alive: 0`); a load that needs room evicts another such model or waits for one. A load
  whose waiters all gave up stops waiting for room.
- A runner whose decode loop failed is *broken*: its requests were failed with a 500, it takes
  no new work, and it is retired — taken out of `loaded` at once (the next request loads the
  model afresh) and closed when its last holder lets go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from localgw import defaults
from localgw.chat.defaults import DefaultSampling, defaults_for_manifest
from localgw.defaults import DEFAULT_MODEL_ID, embedded_model_path
from localgw.engine.fit import Device, Estimate, ModelShape, plan
from localgw.engine.types import LoadOptions, Runner
from localgw.errors import ModelNotFound, ServiceUnavailable, StoreError
from localgw.gguf import read_gguf
from localgw.store import Manifest, ModelFile, ModelStore, default_id_for_path, manifest_from_gguf

log = logging.getLogger("localgw.manager")

RAM_BUDGET = 0.8  # of the RAM free at load time: the rest stays for the user's other programs


RunnerFactory = Callable[[str, str, LoadOptions], Runner]


def _default_devices() -> list[Device]:
    from localgw.engine.devices import list_devices
    return list_devices()


def _default_offload() -> bool:
    from localgw.engine.model import gpu_offload_supported
    return gpu_offload_supported()


def _default_factory(model_id: str, path: str, options: LoadOptions) -> Runner:
    from localgw.engine.runner import LlamaRunner  # imports llama_cpp: only when really loading
    return LlamaRunner(model_id, path, options)


@dataclass
class Loaded:
    runner: Runner
    manifest: Manifest
    estimate: Estimate | None = None
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    active: int = 0  # requests holding it (queued or generating)
    keep_alive: float | None = defaults.KEEP_ALIVE_SECONDS  # idle seconds; None: forever
    expires_at: float | None = None  # time.time() when it will be unloaded, while idle

    @property
    def idle(self) -> bool:
        return self.active == 0 and not self.runner.busy

    def describe(self) -> dict:
        now = time.time()
        runner = self.runner
        return {
            "id": self.manifest.id, "context_length": runner.n_ctx,
            "parallel": runner.n_parallel,
            "kv_unified": runner.kv_unified,
            "slots": runner.describe_slots(),
            "prompt_cache": runner.cache.describe(),
            "prompt_tokens_evaluated": runner.prompt_tokens_evaluated,
            "speculative": runner.speculative,
            "gpu_layers": runner.n_gpu_layers,
            "memory_bytes": runner.memory_bytes,
            "estimated_bytes": self.estimate.total if self.estimate else None,
            "loaded_at": int(self.loaded_at), "active_requests": self.active,
            "queued": runner.queued, "busy": runner.busy,
            "idle_seconds": 0 if not self.idle else round(time.monotonic() - self.last_used, 1),
            "keep_alive": self.keep_alive,
            "expires_at": int(self.expires_at) if self.expires_at and self.idle else None,
            "expires_in_seconds": round(max(self.expires_at - now, 0), 1)
            if self.expires_at and self.idle else None,
        }


class ModelManager:
    def __init__(self, store: ModelStore, *, model_args: list[str] | None = None,
                 options: LoadOptions | None = None, max_loaded: int = defaults.MAX_LOADED,
                 load_wait: float = defaults.LOAD_WAIT_SECONDS,
                 keep_alive: float | None = defaults.KEEP_ALIVE_SECONDS,
                 factory: RunnerFactory = _default_factory,
                 devices: Callable[[], list[Device]] | None = None,
                 offload_supported: Callable[[], bool] | None = None):
        self.store = store
        self.keep_alive = keep_alive
        self.devices = devices or _default_devices
        self.offload_supported = offload_supported or _default_offload
        self.loading: set[str] = set()
        self._loads: dict[str, asyncio.Future] = {}
        self._pins: dict[str, int] = {}  # model id → requests between acquire and release
        self._wakers: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        self.options = options or LoadOptions()
        self.max_loaded = max(1, max_loaded)
        self.load_wait = load_wait
        self.factory = factory
        self.loaded: dict[str, Loaded] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._extra: dict[str, Manifest] = {}  # served by path, or the embedded default
        self.preload: list[str] = []
        self.closing = False
        if self.options.draft_path:
            self.options = replace(self.options, draft_path=self._draft_path(self.options.draft_path))
        for arg in model_args or []:
            self.preload.append(self._add_arg(arg))
        if not self.preload and not store.list():
            path = embedded_model_path()
            if path is not None:
                self._extra[DEFAULT_MODEL_ID] = self._manifest_for_path(path, DEFAULT_MODEL_ID)
                self.preload.append(DEFAULT_MODEL_ID)

    @staticmethod
    def _manifest_for_path(path: Path, model_id: str) -> Manifest:
        info = read_gguf(path)
        return manifest_from_gguf(model_id, info, [ModelFile(path=str(path), size=path.stat().st_size)],
                                  source="path")

    def _add_arg(self, arg: str) -> str:
        """`--model` is a path to a GGUF file (served by its stem) or a registered id."""
        path = Path(os.path.abspath(os.path.expanduser(arg)))
        if path.is_file():
            model_id = default_id_for_path(path)
            self._extra[model_id] = self._manifest_for_path(path, model_id)
            return model_id
        try:
            if self.store.get(arg) is not None:
                return arg
        except StoreError:
            pass
        raise StoreError(f"--model {arg}: no such file, and no model with that id in the store "
                         "(`localgw list` shows them; `localgw pull` adds one)")

    def _draft_path(self, arg: str) -> str:
        """`--draft-model` is a path to a GGUF file or a registered id: its file's path."""
        path = Path(os.path.abspath(os.path.expanduser(arg)))
        if path.is_file():
            return str(path)
        try:
            manifest = self.store.get(arg)
        except StoreError:
            manifest = None
        if manifest is None:
            raise StoreError(f"--draft-model {arg}: no such file, and no model with that id in "
                             "the store (`localgw list` shows them; `localgw pull` adds one)")
        return manifest.path

    # ---- lookups --------------------------------------------------------------------------
    def manifests(self) -> list[Manifest]:
        seen = dict(self._extra)
        for manifest in self.store.list():
            seen.setdefault(manifest.id, manifest)
        return list(seen.values())

    def knows(self, model_id: str) -> bool:
        """Whether `model_id` is a local model (one stat, no parsing: asked on every upstream
        request)."""
        return model_id in self._extra or self.store.has(model_id)

    def manifest(self, model_id: str) -> Manifest:
        found = self._extra.get(model_id)
        if found is None:
            try:
                found = self.store.get(model_id)
            except StoreError:
                found = None
        if found is None:
            known = ", ".join(m.id for m in self.manifests()) or "none"
            raise ModelNotFound(f"The model '{model_id}' does not exist. Available: {known}",
                                param="model")
        return found

    def default_sampling(self, manifest: Manifest, *, thinking: bool = True) -> DefaultSampling:
        """The model's own sampling defaults (its GGUF header, generation_config, catalogue)."""
        return defaults_for_manifest(manifest, thinking=thinking)

    # ---- loading --------------------------------------------------------------------------
    async def acquire(self, model_id: str) -> Loaded:
        """The loaded model, loading it (and evicting an unpinned idle one) first when needed.

        The model is pinned from this call on; the caller must `release` it when its request
        ends (on failure here it is unpinned before the error is raised).
        """
        manifest = self.manifest(model_id)
        if self.closing:
            raise ServiceUnavailable("the server is shutting down")
        self._pins[model_id] = self._pins.get(model_id, 0) + 1
        try:
            entry = await self._loaded_entry(manifest)
        except BaseException:
            self._unpin(model_id)
            self._wake()
            raise
        entry.active += 1
        entry.last_used = time.monotonic()
        return entry

    async def _loaded_entry(self, manifest: Manifest) -> Loaded:
        model_id = manifest.id
        while True:
            entry = self.loaded.get(model_id)
            if entry is not None and entry.runner.broken is not None:
                await self._retire(entry)
                entry = None
            if entry is not None:
                return entry
            # One load per model, shared by everyone waiting; a waiter that gives up (or whose
            # client left) does not cancel it, so no half-loaded model is ever leaked.
            task = self._loads.get(model_id)
            if task is None or task.done():
                task = self._loads[model_id] = asyncio.ensure_future(self._load(manifest))
            try:
                entry = await asyncio.wait_for(asyncio.shield(task), self.load_wait)
            except asyncio.TimeoutError:
                raise ServiceUnavailable(f"{model_id} is still loading after {self.load_wait:.0f}s; "
                                         "retry shortly", headers={"Retry-After": "5"}) from None
            if entry is not None and self.loaded.get(model_id) is entry:
                return entry
            # the load was abandoned (its waiters had gone) or the model broke since: again

    async def release(self, entry: Loaded, keep_alive: float | None | str = "default") -> None:
        """The request is done with the model; it stays loaded for its keep-alive."""
        entry.active -= 1
        entry.last_used = time.monotonic()
        if keep_alive != "default":
            entry.keep_alive = keep_alive
        entry.expires_at = None if entry.keep_alive is None else time.time() + entry.keep_alive
        model_id = entry.manifest.id
        self._unpin(model_id)
        if self.loaded.get(model_id) is not entry:  # retired while held: the last holder closes it
            if entry.active == 0:
                await asyncio.to_thread(entry.runner.close)
        elif entry.keep_alive == 0 and self._evictable(entry):
            await self.unload(model_id)
        self._wake()

    def _unpin(self, model_id: str) -> None:
        left = self._pins.get(model_id, 0) - 1
        if left > 0:
            self._pins[model_id] = left
        else:
            self._pins.pop(model_id, None)

    def _wake(self) -> None:
        """Wake whoever waits for room: a model may have become evictable. A task of its own, so
        a caller being cancelled (a client that left) cannot lose the wake-up."""
        async def notify():
            async with self._changed:
                self._changed.notify_all()
        task = asyncio.get_running_loop().create_task(notify())
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)

    def pinned(self, model_id: str) -> bool:
        """Whether a request has asked for the model and not ended yet."""
        return self._pins.get(model_id, 0) > 0

    def _evictable(self, entry: Loaded) -> bool:
        return entry.idle and not self.pinned(entry.manifest.id)

    async def _retire(self, entry: Loaded) -> None:
        """A broken runner leaves `loaded` now, and is closed once nobody holds it."""
        model_id = entry.manifest.id
        if self.loaded.get(model_id) is not entry:
            return
        del self.loaded[model_id]
        log.error("unloading %s: its decode loop failed (%s); the next request loads it afresh",
                  model_id, entry.runner.broken)
        if entry.active == 0:
            await asyncio.to_thread(entry.runner.close)
        self._wake()

    async def reap(self) -> None:
        """Retire broken models; unload idle ones whose keep-alive has run out."""
        now = time.time()
        for model_id, entry in list(self.loaded.items()):
            if entry.runner.broken is not None:
                await self._retire(entry)
            elif (self._evictable(entry) and entry.expires_at is not None
                  and entry.expires_at <= now):
                log.info("unloading %s: idle for its keep-alive", model_id)
                await self.unload(model_id)

    def start_reaper(self, interval: float = 0.5) -> None:
        async def loop():
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.reap()
                except Exception:  # noqa: BLE001 - the reaper must outlive any one failure
                    log.exception("keep-alive reaper failed")
        self._reaper = asyncio.get_running_loop().create_task(loop())

    async def _load(self, manifest: Manifest) -> Loaded | None:
        """Load a model (None: abandoned while waiting for room, nobody wants it any more)."""
        async with self._lock:
            entry = self.loaded.get(manifest.id)
            if entry is not None:
                return entry
            if not await self._make_room(manifest.id):
                return None
            options, est = await asyncio.to_thread(self._fit, manifest)
            log.info("loading %s from %s: context %d x %d slots, %d layer(s) on the GPU, "
                     "about %.0f MiB", manifest.id, manifest.path, options.n_ctx,
                     options.n_parallel, options.n_gpu_layers, est.total / 2 ** 20)
            self.loading.add(manifest.id)
            try:
                runner = await asyncio.to_thread(self.factory, manifest.id, manifest.path, options)
            finally:
                self.loading.discard(manifest.id)
            entry = self.loaded[manifest.id] = Loaded(runner, manifest, est,
                                                      keep_alive=self.keep_alive)
            log.info("loaded %s: %.0f MiB allocated by llama.cpp", manifest.id,
                     runner.memory_bytes / 2 ** 20)
            return entry

    def _fit(self, manifest: Manifest) -> tuple[LoadOptions, Estimate]:
        """Context size and GPU layers that fit the memory free now (see engine.fit)."""
        shape = ModelShape.from_gguf(read_gguf(manifest.path))
        devices = self.devices()
        # Weights of loaded models are memory-mapped: the OS counts them as reclaimable cache.
        used = sum(e.runner.memory_bytes for e in self.loaded.values())
        devices = [replace(d, free=max(int(d.free * RAM_BUDGET) - used, 0)) if d.kind == "cpu"
                   else d for d in devices]
        est = plan(shape, devices, n_ctx=self.options.n_ctx, n_gpu_layers=self.options.n_gpu_layers,
                   offload_supported=self.offload_supported(), n_parallel=self.options.n_parallel)
        return replace(self.options, n_ctx=est.n_ctx, n_gpu_layers=est.n_gpu_layers,
                       n_parallel=est.n_parallel), est

    async def _make_room(self, for_model: str) -> bool:
        """Evict least recently used unpinned idle models until one more fits; wait while every
        loaded model is pinned or busy. False when nobody wants `for_model` any more."""
        async with self._changed:
            while len(self.loaded) >= self.max_loaded:
                if not self.pinned(for_model):
                    return False
                idle = [e for e in self.loaded.values() if self._evictable(e)]
                if idle:
                    victim = min(idle, key=lambda e: e.last_used)
                    await self.unload(victim.manifest.id)
                    continue
                await self._changed.wait()
        return True

    async def unload(self, model_id: str) -> None:
        entry = self.loaded.pop(model_id, None)
        if entry is not None:
            await asyncio.to_thread(entry.runner.close)

    async def preload_models(self) -> None:
        self.start_reaper()
        for model_id in self.preload[:self.max_loaded]:
            entry = await self._load(self.manifest(model_id))  # room for each: no eviction
            if entry is None:
                continue
            entry.expires_at = None if entry.keep_alive is None else time.time() + entry.keep_alive

    def begin_shutdown(self) -> None:
        """Refuse new work and end what is in flight, telling each client why."""
        self.closing = True
        error = ServiceUnavailable("the server is shutting down")
        for entry in list(self.loaded.values()):
            entry.runner.abort_all(error)

    async def close(self) -> None:
        self.closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        for model_id in list(self.loaded):
            await self.unload(model_id)
