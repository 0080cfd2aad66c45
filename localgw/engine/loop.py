"""The loop: the one thread that owns a model's llama.cpp context and runs its jobs.

Each turn takes the jobs queued meanwhile (engine.jobs), admits waiting choices into free slots
(engine.slots places their prompts), then runs one step:
1. every generating task's pending token, in one batch in slot order (llama.cpp packs
   consecutive KV streams into one ubatch); each task then samples its next token
   (engine.decoding), and the step's events go out before any prompt is read. With
   speculation (engine.spec; `--spec off` leaves `spec` None and this step as it is), a task
   whose drafter proposes tokens adds `[pending] + draft`, logits on every row, to the same
   batch; its sampler then samples row after row while they agree with the draft
   (`Task.verify`), and the cells of the rejected draft tokens leave the KV cache, so the
   slot's tokens and cells agree as without a draft;
2. pending prompt pieces, each in a decode call of its own: a bounded number of tokens per
   step (`prefill_step` when no stream runs: one ubatch on the CPU, the whole batch on a GPU;
   PREFILL_CHUNK_WHILE_DECODING while others stream), so a long new prompt does not freeze the
   streams already running. The piece that ends a prompt has 2 to FINAL_PIECE_MAX tokens
   (`prompt_piece`), and its last row gives the first token.
A decode that finds no free cells (a full shared pool) makes room (`make_room`); any other
decode failure fails the requests in that batch. A fault in one task's sampling ends that
request alone; anything else that escapes a step breaks the loop: every job gets a
`ModelFailed` and the runner takes no more work (the manager loads the model afresh).

Only this thread touches the context, the batch, the slots and the tasks; callers reach it
through the job queue and hear back through their `Generation`s (engine.generation).
"""

from __future__ import annotations

import logging
import threading
import time

import llama_cpp

from localgw.engine.batch import Batch
from localgw.engine.decoding import LogitRows, Task
from localgw.engine.embed import EmbedWork
from localgw.engine.generation import flush
from localgw.engine.jobs import Job, JobQueue
from localgw.engine.model import Model
from localgw.engine.sampling import Sampler
from localgw.engine.slots import Slot, Slots
from localgw.engine.spec import Speculation
from localgw.engine.stops import StopMatcher
from localgw.engine.types import ChoiceDone, JobFailed, PromptDone, TokenText
from localgw.errors import LocalgwError, ModelFailed, ServiceUnavailable

log = logging.getLogger("localgw.engine")

PREFILL_CHUNK_WHILE_DECODING = 128  # prompt tokens per step while other slots stream
FINAL_PIECE_MAX = 63                # rows of a prompt's last piece (see prompt_piece)


def prompt_piece(done: int, total: int, budget: int, ubatch: int) -> int:
    """How many prompt tokens to evaluate next, of `total`, `done` already in the slot.

    The piece that ends the prompt is decoded in a call of its own with 2 to FINAL_PIECE_MAX
    tokens (1 only for a one-token prompt). llama.cpp computes a lone token by other kernels than
    rows of a batch, and its CPU flash attention switches to tiles at 64 rows; between the two,
    a row comes out the same bits however many rows share its ubatch. So the first token's
    logits do not depend on how much of the prompt was cached: a short uncached part is one
    call, a longer one ends with a two-token piece. No piece, and no ubatch of one, holds a
    single token.
    """
    left = total - done
    if left <= min(budget, FINAL_PIECE_MAX, ubatch):
        return left
    n = min(budget, left - 2)
    if n > ubatch and n % ubatch == 1:
        n -= 1
    return n if n >= 2 else 0  # no piece of one token: it would be computed as a lone token


class Loop:
    def __init__(self, model_id: str, model: Model, slots: Slots, jobs: JobQueue, *,
                 n_batch: int, n_parallel: int, prefill_step: int,
                 spec: Speculation | None = None):
        self.model_id = model_id
        self.model = model
        self.slots = slots
        self.jobs = jobs
        self.n_ctx = model.n_ctx
        self.batch = Batch(max(n_batch, n_parallel))
        self.prefill_step = prefill_step
        self.spec = spec
        self._ctx = model.context.ctx
        self._rows = LogitRows(self._ctx, model.n_vocab)
        self.prompt_tokens_evaluated = 0  # prompt tokens decoded (not reused), for metrics/tests
        self._thread = threading.Thread(target=self._run, name=f"llama:{model_id}", daemon=True)
        self.embeds: EmbedWork | None = None  # embedding jobs, run between steps (the runner's)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        events: list = []
        jobs, slots = self.jobs, self.slots.slots
        try:
            while not jobs.closed:
                embeds = self.embeds
                if (not jobs.waiting and all(s.task is None for s in slots)
                        and not (embeds and embeds.busy)):
                    if not jobs.wait():  # idle: sleep until there is work
                        break
                jobs.take()
                if embeds is not None:  # engine.embed: one bounded embedding decode a turn
                    embeds.take(jobs.waiting)
                self.admit(events)
                self.step(events)
                if embeds is not None and embeds.busy:
                    embeds.step(events, streaming=any(s.task is not None for s in slots))
                if events:
                    flush(events)
        except Exception as exc:  # noqa: BLE001 - tell every caller rather than hang them
            log.exception("the decode loop of %s failed", self.model_id)
            self._fail_all(exc, events)
        finally:
            self._end_everything()

    # ---- admission: a waiting choice gets a slot --------------------------------------------
    def admit(self, events: list) -> None:
        waiting = self.jobs.waiting
        while waiting:
            job = waiting[0]
            if job.out.cancelled.is_set():
                self._end_tasks_of(job, events)
                self._maybe_finish(job, events)
                continue
            if job.admitted and job.lead is not None and job.lead.state == "prefill":
                return  # siblings copy the lead's prompt once it is in the cache
            idle = self.slots.free()
            if not idle:
                return
            try:
                sampler = Sampler(job.params, (job.seed + job.admitted) & 0xFFFFFFFF,
                                  self.model.llama, self.model.n_vocab)
            except Exception as exc:  # noqa: BLE001 - this request's fault, not the model's
                self._fail_job(job, exc, events)
                continue
            self._start_task(job, idle, sampler, events)
            if job.admitted == job.n:
                waiting.popleft()
                self.jobs.dequeue()

    def _start_task(self, job: Job, idle: list[Slot], sampler: Sampler, events: list) -> None:
        prompt = job.prompt
        slot, reuse = self.slots.place(prompt, idle)
        index = job.admitted
        job.admitted += 1
        params = job.params
        room = self.n_ctx - len(prompt)
        task = Task(job, index, slot, sampler, budget=min(params.max_tokens or room, room),
                    stops=StopMatcher(params.stop))
        slot.task = task
        slot.last_used = time.monotonic()
        if index == 0:
            job.lead = task
            events.append((job.out, PromptDone(len(prompt), reuse)))

    # ---- one step: the streams' next tokens, then prompt pieces ------------------------------
    def step(self, events: list) -> None:
        slots = self.slots.slots
        for s in slots:
            if s.task is not None and s.task.job.out.cancelled.is_set():
                self._end_task(s.task, events, None)
        decoding = [s.task for s in slots if s.task is not None and s.task.state == "generate"]
        if decoding:
            self._decode_streams(decoding, events)
            if events:
                flush(events)  # the streams' tokens go out before any prompt is read
        budget = PREFILL_CHUNK_WHILE_DECODING if decoding else self.prefill_step
        for slot in slots:
            task = slot.task
            if task is None or task.state != "prefill" or task.job.out.cancelled.is_set():
                continue
            done, total = len(slot.tokens), len(task.job.prompt)
            n = prompt_piece(done, total, budget, self.model.n_ubatch)
            if n <= 0:
                continue
            budget -= n
            if not self._prefill(task, done, n, final=done + n == total, events=events):
                continue
            if budget <= 0:
                break

    def _prefill(self, task: Task, done: int, n: int, final: bool, events: list) -> bool:
        """Decode `n` prompt tokens of a task from `done` on (the last piece samples the first
        token); False when the decode failed (see _decode_or_make_room)."""
        slot = task.slot
        part = task.job.prompt[done:done + n]
        self.batch.clear()
        task.out_index = self.batch.add(part, done, slot.seq, final)
        # prefill speed for engine.reuse: not when a pending stream copy runs inside this
        # decode, and on a GPU (where decode returns before the work is done) only for a
        # prompt's last piece, whose logits are waited for next anyway
        rates = self.slots.rates
        timed = not self.slots.copy_to and (final or not rates.on_gpu)
        started = time.perf_counter()
        if not self._decode_or_make_room([task], events):
            return False
        if timed:
            if rates.on_gpu:
                llama_cpp.llama_synchronize(self._ctx)
            rates.prefilled(n, time.perf_counter() - started)
        slot.tokens.extend(int(x) for x in part)
        self.prompt_tokens_evaluated += n
        if final:
            task.state = "generate"
            self._sample_or_fail(task, events)
        return True

    def _decode_streams(self, tasks: list[Task], events: list) -> None:
        """One batch: the pending token of every generating slot, in slot order (llama.cpp packs
        consecutive KV streams into one ubatch)."""
        if self.spec is not None:
            drafts = self.spec.drafts(tasks, self.batch.capacity)
            if drafts is not None:
                self._verify_drafts(tasks, drafts, events)
                return
        batch = self.batch
        batch.clear()
        for t in tasks:
            t.out_index = batch.add([t.pending], len(t.slot.tokens), t.slot.seq, True)
        if not self._decode_or_make_room(tasks, events):
            return
        for t in tasks:
            t.slot.tokens.append(t.pending)
            self._sample_or_fail(t, events)

    def _verify_drafts(self, tasks: list[Task], drafts: list[list[int]], events: list) -> None:
        """One batch: every generating slot's pending token and its draft (logits on each of
        their rows); each task keeps the draft tokens its sampler agrees with (engine.spec)."""
        batch = self.batch
        batch.clear()
        for t, draft in zip(tasks, drafts):
            last = batch.add([t.pending, *draft], len(t.slot.tokens), t.slot.seq, True, True)
            t.out_index = last - len(draft)
        if not self._decode_or_make_room(tasks, events):
            return
        for t, draft in zip(tasks, drafts):
            if t.slot.task is not t:  # its request failed while a sibling was sampled
                self.slots.seq_rm(t.slot.seq, len(t.slot.tokens))
                continue
            try:
                kept, finish = t.verify(draft, self._ctx, self.model, self._rows, events)
            except Exception as exc:  # noqa: BLE001 - one request's fault, not the model's
                kept, finish = -1, None
                self._fail_job(t.job, exc, events)
            if kept < len(draft):  # rejected draft tokens (or a failure) leave the KV cache
                self.slots.seq_rm(t.slot.seq, len(t.slot.tokens))
            if kept >= 0:
                self.spec.settle(t, len(draft), kept)
            if finish is not None:
                self._end_task(t, events, finish)

    def _sample_or_fail(self, task: Task, events: list) -> None:
        """Sample a task's next token; a fault there ends that request alone."""
        try:
            finish = task.next_token(self._ctx, self.model, self._rows, events)
        except Exception as exc:  # noqa: BLE001 - one request's fault, not the model's
            self._fail_job(task.job, exc, events)
            return
        if finish is not None:
            self._end_task(task, events, finish)

    def _decode_or_make_room(self, tasks: list[Task], events: list) -> bool:
        """Decode the batch; on failure, free room (or fail) and report False: the caller's
        tasks are then retried on the next step, or ended."""
        rc = self.batch.decode(self._ctx)
        self.slots.copies_done()
        if rc == 0:
            return True
        self._make_room(rc, tasks, events)
        return False

    def _make_room(self, rc: int, tasks: list[Task], events: list) -> None:
        """A decode of `tasks` failed. No free KV cells (rc 1, a shared pool only): give idle
        slots' cells back; if there are none, a prompt waits for the next step, and a stream
        that cannot grow ends with `length`. Anything else fails them."""
        for t in tasks:  # what the failed call may have left behind
            self.slots.seq_rm(t.slot.seq, len(t.slot.tokens))
        if rc != 1:
            error = ServiceUnavailable(f"llama_decode failed ({rc}) for {self.model_id}")
            for t in tasks:
                events.append((t.job.out, JobFailed(error)))
                t.job.out.cancel()
                self._end_task(t, events, None)
            return
        if self.slots.give_back_idle():
            return
        running = [s.task for s in self.slots.slots if s.task is not None]
        if any(t.state == "prefill" for t in tasks) and any(t.state == "generate" for t in running):
            return  # the prompt waits until a stream ends
        victim = max(running, key=lambda t: len(t.slot.tokens))
        log.warning("%s: the KV cache is full with %d requests; ending the longest (%d tokens)",
                    self.model_id, len(running), len(victim.slot.tokens))
        self._end_task(victim, events, "length")

    # ---- ends: a choice, a job, everything ----------------------------------------------------
    def _end_task(self, task: Task, events: list, finish: str | None) -> None:
        """Free the slot (its KV stays, for the next request with the same prefix). `finish`
        None: cancelled or failed, no ChoiceDone."""
        job = task.job
        if finish is not None:
            tail = task.tail()
            if tail:
                events.append((job.out, TokenText(task.index, tail)))
            events.append((job.out, ChoiceDone(task.index, finish, task.generated,
                                               task.stops.matched)))
        task.sampler.close()
        task.slot.task = None
        task.slot.last_used = time.monotonic()
        if self.spec is not None:
            self.spec.forget(task.slot.seq)
        job.finished += 1
        self._maybe_finish(job, events)

    def _fail_job(self, job: Job, exc: Exception, events: list) -> None:
        """End one request with an error: its own (a LocalgwError), or a 500 for a bug. The
        error goes out before the job's end, and its choices leave their slots."""
        if not isinstance(exc, LocalgwError):
            log.exception("a request on %s failed", self.model_id, exc_info=exc)
            exc = LocalgwError(f"this request failed in the engine ({type(exc).__name__}: {exc})")
        events.append((job.out, JobFailed(exc)))
        job.out.cancel()
        self._end_tasks_of(job, events)
        self._maybe_finish(job, events)

    def _maybe_finish(self, job: Job, events: list) -> None:
        """A job ends (its caller's iteration stops) when all its choices are done, or when it was
        cancelled and none of its choices still runs."""
        if job.done:
            return
        if job.finished >= job.n or (job.out.cancelled.is_set() and not self._has_running(job)):
            if job in self.jobs.waiting:
                self.jobs.waiting.remove(job)
                self.jobs.dequeue()
            job.done = True
            self.jobs.finish(job, events)

    def _has_running(self, job: Job) -> bool:
        return any(s.task is not None and s.task.job is job for s in self.slots.slots)

    def _end_tasks_of(self, job: Job, events: list) -> None:
        for s in self.slots.slots:
            if s.task is not None and s.task.job is job:
                self._end_task(s.task, events, None)

    def _fail_all(self, exc: Exception, events: list) -> None:
        """The loop failed: the runner is broken (the manager retires it and loads the model
        afresh for the next request), and every job in it ends with a 500."""
        error = ModelFailed(f"the decode loop of {self.model_id} failed ({type(exc).__name__}: "
                            f"{exc}); the model is reloaded for the next request")
        for job in self.jobs.fail(error):
            events.append((job.out, JobFailed(error)))
        flush(events)  # before _end_everything's ends

    def _end_everything(self) -> None:
        """The loop stops: whoever still waits gets an end, and no sampler is leaked."""
        for s in self.slots.slots:
            if s.task is not None:
                s.task.sampler.close()
                s.task = None
        if self.spec is not None:
            self.spec.close()
        events = [(job.out, None) for job in self.jobs.clear()]
        flush(events)
