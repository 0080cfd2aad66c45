"""Which models the upstreams serve, kept fresh, and which upstreams a model id goes to.

Lists are read at start (the server does not wait long for an upstream that is down: it is
retried in the background, 1 s then doubling up to a minute), every 60 s, and on a miss (an id
nobody knows; throttled, and shared by concurrent misses). A list that can no longer be read is
kept: requests for its models then reach the upstream and fail with a 502 that names it, which
says more than a 404 would.

Ids: a local model wins a clash, and the upstream's copy is listed as `NAME/ID`; several
upstreams serving one id are one entry, tried in config order (failover). `NAME/ID` also pins a
request to that upstream when there is no clash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from localgw.errors import LocalgwError, QueueFull
from localgw.upstreams.config import UpstreamConfig
from localgw.upstreams.client import Recorder, UpstreamClient

log = logging.getLogger("localgw.upstreams")

REFRESH_EVERY = 60.0
RETRY_FIRST, RETRY_MAX = 1.0, 60.0
MISS_EVERY = 2.0     # seconds between refreshes caused by unknown ids
MISS_WAIT = 3.0      # seconds a request for an unknown id waits for that refresh
START_WAIT = 3.0     # seconds `serve` waits for the first lists before it listens anyway


@dataclass
class Upstream:
    """One upstream's client and what is known about it."""

    config: UpstreamConfig
    client: UpstreamClient
    models: dict[str, dict] = field(default_factory=dict)  # its id → its model object
    reachable: bool | None = None  # None: not tried yet
    in_flight: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    listed_at: float | None = None
    failures: int = 0  # refreshes failed in a row (for the retry delay)

    def take(self) -> None:
        """Count one request in; past max_concurrency it is the same 429 as a full local queue."""
        limit = self.config.max_concurrency
        if limit is not None and self.in_flight >= limit:
            raise QueueFull(f"{self.in_flight} requests are already running on upstream "
                            f"{self.config.name} (its max_concurrency); retry shortly",
                            headers={"Retry-After": "1"})
        self.in_flight += 1

    def give_back(self) -> None:
        self.in_flight -= 1

    def record_success(self) -> None:
        self.reachable = True

    def record_fault(self, exc: LocalgwError, recorder: Recorder | None, kind: str) -> None:
        if recorder is not None:
            recorder.failed(self.config.name, kind)
        if exc.status >= 500:  # a 4xx was the client's request, not the upstream's health
            self.last_error, self.last_error_at = exc.message, time.time()
            log.warning("%s", exc.message)
        if kind == "unreachable":
            self.reachable = False

    def accept(self, listed: list[dict]) -> None:
        allowed = self.config.models
        self.models = {m["id"]: m for m in listed if allowed is None or m["id"] in allowed}
        self.reachable, self.failures, self.listed_at = True, 0, time.time()

    def describe(self) -> dict:
        return {"name": self.config.name, "url": self.config.shown_url,
                "reachable": self.reachable, "models": sorted(self.models),
                "in_flight": self.in_flight, "max_concurrency": self.config.max_concurrency,
                "last_error": self.last_error, "last_error_at": self.last_error_at,
                "listed_at": self.listed_at}


@dataclass(frozen=True)
class Target:
    """An upstream and the id to ask it for."""

    upstream: Upstream
    model_id: str


@dataclass(frozen=True)
class Listed:
    """One upstream model as /v1/models shows it."""

    id: str
    target: Target

    def model_object(self) -> dict:
        name = self.target.upstream.config.name
        return dict(self.target.upstream.models[self.target.model_id], id=self.id,
                    owned_by=name, upstream=name)


class UpstreamRegistry:
    def __init__(self, configs: list[UpstreamConfig], recorder: Recorder | None = None,
                 refresh_every: float = REFRESH_EVERY):
        self.upstreams = [Upstream(c, UpstreamClient(c)) for c in configs]
        self.recorder = recorder
        for upstream in self.upstreams if recorder is not None else ():
            recorder.watch(upstream.config.name, lambda u=upstream: u.in_flight)
        self.refresh_every = refresh_every
        self._tasks: list[asyncio.Task] = []
        self._miss: asyncio.Task | None = None
        self._miss_at = 0.0

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self, wait: float = START_WAIT) -> None:
        """Read every list in the background; wait up to `wait` seconds for the first reads."""
        firsts = []
        for upstream in self.upstreams:
            c = upstream.config
            if c.api_key_env and not upstream.client.has_key:
                log.warning("upstream %s: $%s is not set; requests go without a key",
                            c.name, c.api_key_env)
            first = asyncio.Event()
            firsts.append(first)
            self._tasks.append(asyncio.get_running_loop().create_task(self._keep_fresh(upstream, first)))
        if firsts:
            await asyncio.wait([asyncio.ensure_future(f.wait()) for f in firsts], timeout=wait)

    async def close(self) -> None:
        for task in self._tasks + ([self._miss] if self._miss else []):
            task.cancel()
        for upstream in self.upstreams:
            await upstream.client.http.aclose()

    async def _keep_fresh(self, upstream: Upstream, first: asyncio.Event) -> None:
        while True:
            await self.refresh(upstream)
            first.set()
            delay = self.refresh_every if upstream.failures == 0 else \
                min(RETRY_FIRST * 2 ** (upstream.failures - 1), RETRY_MAX, self.refresh_every)
            await asyncio.sleep(delay)

    async def refresh(self, upstream: Upstream) -> None:
        """Read one upstream's model list; a failure keeps the last one and says why."""
        try:
            listed = await upstream.client.list_models()
        except LocalgwError as exc:
            upstream.failures += 1
            if upstream.failures == 1 or upstream.reachable is not False:
                log.warning("%s; retrying in the background", exc.message)
            upstream.reachable = False
            upstream.last_error, upstream.last_error_at = exc.message, time.time()
            return
        if upstream.reachable is not True:
            log.info("upstream %s (%s): %d model(s)", upstream.config.name,
                     upstream.config.shown_url, len(listed))
        upstream.accept(listed)

    async def refresh_on_miss(self) -> None:
        """Re-read every list (at most every MISS_EVERY s; concurrent misses share one read)."""
        if self._miss is None or (self._miss.done() and time.monotonic() - self._miss_at > MISS_EVERY):
            self._miss_at = time.monotonic()
            self._miss = asyncio.ensure_future(
                asyncio.gather(*(self.refresh(u) for u in self.upstreams)))
        await asyncio.wait([self._miss], timeout=MISS_WAIT)

    # ---- ids ----------------------------------------------------------------------------------
    def listing(self, local_ids: set[str]) -> list[Listed]:
        """Every upstream model once, under the id a client asks for it by."""
        out, seen = [], set()
        for upstream in self.upstreams:
            name = upstream.config.name
            for model_id in upstream.models:
                shown = f"{name}/{model_id}" if model_id in local_ids else model_id
                if shown not in seen:
                    seen.add(shown)
                    out.append(Listed(shown, Target(upstream, model_id)))
        return out

    def targets(self, model_id: str, is_local: Callable[[str], bool]) -> list[Target]:
        """The upstreams a request for `model_id` may go to, in order; [] for a local model."""
        serving = [Target(u, model_id) for u in self.upstreams if model_id in u.models]
        if serving:
            return [] if is_local(model_id) else serving
        name, sep, rest = model_id.partition("/")
        for upstream in self.upstreams:
            if sep and upstream.config.name == name and rest in upstream.models \
                    and not is_local(model_id):
                return [Target(upstream, rest)]
        return []

    async def find(self, model_id: str, is_local: Callable[[str], bool]) -> list[Target]:
        """`targets`, re-reading the lists once when nobody knows the id."""
        if not self.upstreams:
            return []
        found = self.targets(model_id, is_local)
        if found or is_local(model_id):
            return found
        await self.refresh_on_miss()
        return self.targets(model_id, is_local)

    def describe(self) -> list[dict]:
        return [u.describe() for u in self.upstreams]
