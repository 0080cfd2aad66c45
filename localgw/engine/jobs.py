"""Jobs, and the bounded queue that holds them until the loop admits them.

A `Job` is one request: its prompt, its sampling parameters, its `n` choices and the
`Generation` its events go to. Callers (the event loop) `reserve` a place in the queue (a 429
past `max_queue`, a 503 once closed, the loop's failure once it broke; all under the lock) and
`put` the job. The loop thread alone takes jobs off the queue: into `waiting`, a FIFO of jobs
not all of whose choices have a slot yet; a job leaves the count of queued ones (`dequeue`)
when its last choice is admitted or it ends first. `jobs` (submitted, not finished) is what
`abort_all`, `close` and a failing loop reach, under the lock.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localgw.engine.generation import Generation
from localgw.engine.prompt_cache import as_tokens
from localgw.engine.types import SamplingParams
from localgw.errors import ModelFailed, QueueFull, ServiceUnavailable

if TYPE_CHECKING:
    from localgw.engine.decoding import Task


@dataclass(eq=False)
class Job:
    tokens: list[int]
    params: SamplingParams
    n: int
    out: Generation
    preserve: frozenset = frozenset()  # control token ids rendered as text
    admitted: int = 0                  # choices given a slot so far
    finished: int = 0
    seed: int = 0
    lead: "Task | None" = None         # choice 0: its siblings copy its prompt's KV
    done: bool = False

    def __post_init__(self):
        self.prompt = as_tokens(self.tokens)


class JobQueue:
    def __init__(self, model_id: str, max_queue: int):
        self.model_id = model_id
        self.max_queue = max_queue
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.waiting: deque[Job] = deque()  # taken off the queue, not all choices admitted
        self.queued = 0
        self.jobs: set[Job] = set()  # submitted and not yet finished
        self.lock = threading.Lock()
        self.closed = False
        self.broken: ModelFailed | None = None  # set when the loop fails: no new work then

    # ---- callers -----------------------------------------------------------------------------
    def reserve(self) -> None:
        """Count one more queued job, or refuse it."""
        with self.lock:
            if self.broken is not None:
                raise self.broken
            if self.closed:
                raise ServiceUnavailable(f"{self.model_id} was unloaded; retry the request",
                                         headers={"Retry-After": "1"})
            if self.queued >= self.max_queue:
                raise QueueFull(f"{self.queued} requests are already waiting for {self.model_id}; "
                                "retry shortly", headers={"Retry-After": "1"})
            self.queued += 1

    def put(self, job: Job) -> None:
        with self.lock:
            self.jobs.add(job)
        self._queue.put(job)

    def snapshot(self) -> list[Job]:
        with self.lock:
            return list(self.jobs)

    def close(self) -> list[Job] | None:
        """Take no more work; the jobs in flight (None when closed already)."""
        with self.lock:
            if self.closed:
                return None
            self.closed = True
            return list(self.jobs)

    def wake_to_stop(self) -> None:
        self._queue.put(None)

    # ---- the loop thread ---------------------------------------------------------------------
    def wait(self) -> bool:
        """Sleep until a job comes (it joins `waiting`); False when told to stop instead."""
        job = self._queue.get()
        if job is None:
            return False
        self.waiting.append(job)
        return True

    def take(self) -> None:
        """Move what was queued meanwhile to `waiting` (a stop request closes the queue)."""
        while not self._queue.empty():  # only this thread takes: not empty means get succeeds
            job = self._queue.get_nowait()
            if job is None:
                self.closed = True
                return
            self.waiting.append(job)

    def dequeue(self) -> None:
        with self.lock:
            self.queued -= 1

    def finish(self, job: Job, events: list) -> None:
        with self.lock:
            self.jobs.discard(job)
        events.append((job.out, None))

    def fail(self, error: ModelFailed) -> list[Job]:
        """The loop broke: refuse new work with `error`; the jobs in flight."""
        with self.lock:
            self.broken = error
            return list(self.jobs)

    def clear(self) -> list[Job]:
        """The loop stops: forget every job; the ones that were in flight."""
        self.take()
        with self.lock:
            jobs = list(self.jobs)
            self.jobs.clear()
            self.queued = 0
        self.waiting.clear()
        return jobs
