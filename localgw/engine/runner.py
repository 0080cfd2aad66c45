"""LlamaRunner: the one owner of a llama.cpp context, serving many requests at once.

Design:
- One context per model with `n_seq_max = parallel` sequences, each a *slot* with its own KV
  stream of `n_ctx` cells (llama.cpp's non-unified KV). Own streams keep a slot's attention
  independent of its neighbours: a stream decoded beside others gives bit-identical logits to
  the same stream decoded alone (one shared pool does not: see `kv_unified` below). A request
  (each choice of `n`) runs in a slot with its own sampler chain (grammar, penalties, seed), stop
  matcher, UTF-8 decoder and logprobs.
- HTTP handlers never touch the context: they `submit` a job (a FIFO queue, bounded: 429 past
  `max_queue`) and read events from their `Generation`. One thread — the loop — owns the context.
- One decode loop (continuous batching). Each step decodes the next token of every generating
  slot in one batch (llama.cpp packs consecutive KV streams into one ubatch), hands their events
  to the event loop, then reads pending prompt pieces: a bounded number of tokens per step (one
  ubatch on the CPU, the whole batch on a GPU; 128 while others stream), so a new 8k-token prompt
  does not freeze the streams already running. A prompt piece is decoded in a call of its own:
  with several KV streams llama.cpp splits a mixed batch into ubatches of equal tokens per
  sequence anyway, and a piece on its own is computed exactly as it would be alone. Sampling
  stays in llama.cpp's sampler chains (engine.sampling), but two chains start in numpy: greedy
  alone takes the first largest logit (the same token), and top_p with top_k off finds its
  nucleus (the same up to rounding) before llama.cpp's min_p, temperature and dist run on it
  (per-token CPU matters most on a GPU, where a step's decode is short).
- Slot choice by prefix: a new request takes the idle slot whose cached tokens share the longest
  prefix with its prompt. A longer prefix held by any other slot (busy or idle) or by an entry of
  the host-RAM prompt cache (engine.prompt_cache) is copied in when that is cheaper than reading
  its extra tokens (engine.reuse weighs bytes moved against measured prefill time): another
  slot's cells by `llama_memory_seq_cp` (a whole-stream copy; a GPU's or a shared pool's choice)
  or by `llama_state_seq_get_data`/`set_data` through a host buffer (its own cells only: the
  CPU's choice unless it holds most of its stream), a cache entry by `set_data`. So the `n`
  choices of one request share their prompt (it is evaluated once), and a new conversation does
  not pay a whole-stream copy for the chat template's first few tokens. A slot taken over by
  another conversation is saved to the prompt cache first.
- Reproducible seeds: the piece that ends a prompt is decoded on its own with 2 to 63 tokens
  (the last two are re-read even when all of the prompt was cached) and the first token is
  sampled from its last row (`prompt_piece`). llama.cpp computes a lone token by other kernels
  than the rows of a batch (the logits of a prompt's last token often differ), and its
  CPU flash attention tiles 64 rows or more; rows of 2-63 come out the same bits however many
  share the call. So the first token's logits are the same cold, warm or restored from the
  prompt cache: same request + same seed = same text, first call or tenth. And a short cold
  prompt costs one decode call, not a prefill plus a one-token step.
- The memory planner (engine.fit) chooses context and slots together: KV = slots x context.
- `kv_unified` (`serve --kv-unified`, off by default) puts the same cells in one pool shared by
  the slots, as llama.cpp's server does by default; a request may still use `n_ctx` of them. On a
  GPU one pool decodes several streams markedly faster than one stream each, and one stream as
  fast (docs/benchmarks.md). The price: attention runs over the whole pool, so a stream's last
  bits depend on where its neighbours' cells sit (greedy streams soon leave their solo text),
  and neither "starts exactly as alone" nor "same seed, same text" holds beside other
  conversations. A full pool (cells fragmented by cached conversations) makes idle slots give
  their cells back first (saved to the prompt cache), then pending prompt chunks wait, and only
  then does the longest running request end with `length`.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import hashlib
import logging
import queue
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from localgw.engine.stops import StopMatcher
from localgw.engine.batch import Batch
from localgw.engine.llamalog import capture_buffers
from localgw.engine.memory import release_freed_memory
from localgw.engine.prompt_cache import PromptCache, as_tokens, common_prefix
from localgw.engine.reuse import Rates, Source, choose as choose_source
from localgw.engine.sampling import Sampler
from localgw.engine.threads import default_threads
from localgw.engine.types import (ChoiceDone, Event, JobFailed, LoadOptions, PromptDone,
                                  SamplingParams, TokenLogprob, TokenText, TopLogprob)
from localgw.errors import (ContextLengthExceeded, InvalidRequest, LocalgwError, ModelFailed,
                            ModelLoadError, QueueFull, ServiceUnavailable)

log = logging.getLogger("localgw.engine")

PREFILL_CHUNK_WHILE_DECODING = 128  # prompt tokens per step while other slots stream
MIN_SAVE_TOKENS = 32                # a slot holding fewer tokens is not worth saving
FINAL_PIECE_MAX = 63                # rows of a prompt's last piece (see prompt_piece)
SLOT_SIMILARITY = 0.5               # share of a prompt a slot must hold to be chosen for it
MAX_SCRATCH = 64 << 20              # bytes of the donor copy buffer kept between copies
GOOD_GRAMMARS = 256                 # compiled grammars remembered (by digest) per model
_backend_ready = False
_FLASH_ATTN_NAMES = {llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO: "auto",
                     llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED: "off",
                     llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED: "on"}


def gpu_offload_supported() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


def system_info() -> str:
    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()


class Generation:
    """The caller's end of a job: async-iterate events; `cancel()` frees the slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()

    def _send(self, event: Event | None) -> None:  # called from the loop thread
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is gone: nobody listens any more
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    def __aiter__(self):
        return self

    async def __anext__(self) -> Event:
        event = await self._events.get()
        if event is None:
            raise StopAsyncIteration
        return event


# a second handle on llama_get_logits_ith that returns the row's address as a plain int (the
# first one's float pointer would need a ctypes.cast per token)
_logits_address = type(llama_cpp.llama_cpp._lib.llama_get_logits_ith)(
    ("llama_get_logits_ith", llama_cpp.llama_cpp._lib))
_logits_address.argtypes = [ctypes.c_void_p, ctypes.c_int32]
_logits_address.restype = ctypes.c_void_p


def _deliver(items: list) -> None:
    for out, event in items:
        out._events.put_nowait(event)


@dataclass(eq=False)
class _Job:
    tokens: list[int]
    params: SamplingParams
    n: int
    out: Generation
    preserve: frozenset = frozenset()  # control token ids rendered as text
    admitted: int = 0                  # choices given a slot so far
    finished: int = 0
    seed: int = 0
    lead: "_Task | None" = None
    done: bool = False

    def __post_init__(self):
        self.prompt = as_tokens(self.tokens)


@dataclass(eq=False)
class _Task:
    """One choice of a job, running in a slot."""

    job: _Job
    index: int
    slot: "_Slot"
    sampler: Sampler
    budget: int
    state: str = "prefill"             # prefill → generate
    pending: int = -1                  # sampled token to feed on the next step
    out_index: int = -1                # its logits row in the current batch
    generated: int = 0
    decoder: object = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    stops: StopMatcher | None = None


@dataclass(eq=False)
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds
    task: _Task | None = None
    last_used: float = 0.0


class LlamaRunner:
    """Owns one loaded model and its context; serves jobs in parallel slots from a bounded queue."""

    def __init__(self, model_id: str, path: str, options: LoadOptions):
        global _backend_ready
        self.model_id = model_id
        self.path = path
        self.max_queue = options.max_queue
        decode_threads, batch_threads = default_threads()
        self.n_threads = options.n_threads or decode_threads
        self.n_threads_batch = options.n_threads_batch or max(batch_threads, self.n_threads)
        if options.n_gpu_layers is None:
            self.n_gpu_layers = -1 if gpu_offload_supported() else 0
        else:
            self.n_gpu_layers = options.n_gpu_layers
        self.n_parallel = max(1, options.n_parallel or 4)
        self.n_batch = options.n_batch
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True
        started = time.monotonic()
        try:
            with capture_buffers() as buffers:
                mparams = llama_cpp.llama_model_default_params()
                mparams.n_gpu_layers = self.n_gpu_layers
                self._model = internals.LlamaModel(path_model=path, params=mparams, verbose=False)
                cparams = llama_cpp.llama_context_default_params()
                per_slot = options.n_ctx or self._model.n_ctx_train()
                # one KV stream per slot: a slot's attention never sees another's cells, so a
                # stream decoded beside others gives the same logits as alone; or the same
                # cells in one pool (kv_unified, see the docstring)
                cparams.n_ctx = per_slot * self.n_parallel
                cparams.n_batch = options.n_batch
                cparams.n_ubatch = min(options.n_ubatch, options.n_batch)
                cparams.n_seq_max = self.n_parallel
                cparams.kv_unified = bool(options.kv_unified)
                cparams.n_threads = self.n_threads
                cparams.n_threads_batch = self.n_threads_batch
                cparams.flash_attn_type = self._flash_attn(options)
                cparams.no_perf = False
                self._ctx = internals.LlamaContext(model=self._model, params=cparams, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"could not load {model_id} from {path}: {exc}") from exc
        self.buffers = dict(buffers)  # what llama.cpp reports it allocated, by kind and device
        self.load_seconds = time.monotonic() - started
        self.kv_unified = bool(options.kv_unified)
        self.n_ctx = llama_cpp.llama_n_ctx_seq(self._ctx.ctx)  # what one request may use
        if self.kv_unified:  # the pool holds every slot's cells; one request gets its share
            self.n_ctx = min(self.n_ctx, per_slot)
        self.n_vocab = self._model.n_vocab()
        self._vocab = self._model.vocab
        self._mem = self._ctx.memory
        self._metadata = self._model.metadata()
        self._batch = Batch(max(self.n_batch, self.n_parallel))
        # prompt tokens per step when no slot streams: one ubatch on the CPU, where one takes
        # about a second (a client that leaves is noticed between steps); the whole batch on a GPU
        self._prefill_step = self.n_batch if self.n_gpu_layers != 0 else cparams.n_ubatch
        self._n_ubatch = cparams.n_ubatch
        self.cache = PromptCache(options.cache_ram if options.cache_ram is not None
                                 else default_cache_ram())
        self._slots = [_Slot(seq) for seq in range(self.n_parallel)]
        # stream copies run at the start of the next decode: until then a destination is no
        # donor, and neither end is reassigned (a source may feed several copies)
        self._copy_to: set[int] = set()
        self._copy_from: set[int] = set()
        self.rates = Rates(on_gpu=self.n_gpu_layers != 0 and gpu_offload_supported())
        self._scratch = bytearray()  # a donor's cells on their way to another slot (see reuse)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._waiting: deque[_Job] = deque()  # taken off the queue, not all choices admitted
        self._queued = 0
        self._jobs: set[_Job] = set()  # submitted and not yet finished
        self._lock = threading.Lock()
        self._closed = False
        self.broken: ModelFailed | None = None  # set when the loop fails: no new work then
        self._piece_cache: dict[int, bytes] = {}
        self._good_grammars: OrderedDict[bytes, None] = OrderedDict()  # digests, LRU
        self._rows: dict[int, np.ndarray] = {}  # numpy views of logits rows, by address
        self._preserve_ids: dict[str, int | None] = {}
        self.prompt_tokens_evaluated = 0  # prompt tokens decoded (not reused), for metrics/tests
        self._thread = threading.Thread(target=self._worker, name=f"llama:{model_id}", daemon=True)
        self._thread.start()
        log.info("loaded %s (ctx %d x %d slots%s, threads %d/%d, gpu layers %d, flash "
                 "attention %s) in %.2fs", model_id, self.n_ctx, self.n_parallel,
                 ", one shared KV pool" if self.kv_unified else "", self.n_threads,
                 self.n_threads_batch, self.n_gpu_layers, _FLASH_ATTN_NAMES[cparams.flash_attn_type],
                 self.load_seconds)

    def _flash_attn(self, options: LoadOptions) -> int:
        """llama.cpp decides per device unless the options say (on a CPU it turns it on; the
        trade on CPUs is in the README's Threads section)."""
        if options.flash_attn is not None:
            return (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if options.flash_attn
                    else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        return llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO

    # ---- facts the chat layer needs -------------------------------------------------------
    @property
    def memory_bytes(self) -> int:
        return sum(self.buffers.values())

    @property
    def metadata(self) -> dict[str, str]:
        return self._metadata

    def token_text(self, token_id: int) -> str:
        return self._model.token_get_text(token_id) if token_id >= 0 else ""

    @property
    def bos_text(self) -> str:
        return self.token_text(self._model.token_bos())

    @property
    def eos_text(self) -> str:
        return self.token_text(self._model.token_eos())

    @property
    def add_bos(self) -> bool:
        return self._model.add_bos_token()

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos, special)

    def prompt_tokens(self, prompt: str) -> list[int]:
        """Tokens of a rendered prompt: special tokens parsed, BOS added once when the model wants it."""
        tokens = self.tokenize(prompt)
        bos = self._model.token_bos()
        if self.add_bos and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    # ---- queue --------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return self._queued

    @property
    def busy(self) -> bool:
        return self._queued > 0 or any(s.task is not None for s in self._slots)

    def describe_slots(self) -> list[dict]:
        return [{"id": s.seq, "busy": s.task is not None, "cached_tokens": len(s.tokens)}
                for s in self._slots]

    def check_prompt(self, tokens: list[int]) -> None:
        """A prompt must leave room for at least one generated token: else a 400, never a cut."""
        if len(tokens) >= self.n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, your "
                f"prompt is {len(tokens)} tokens, which leaves no room for a reply. Shorten the "
                f"prompt or start the server with a larger --ctx.", param="messages")

    def check_grammar(self, gbnf: str) -> None:
        """Parse a grammar once with this model's vocabulary; a bad one is a 400, not a crash.
        The last GOOD_GRAMMARS that compiled are remembered by digest."""
        text = gbnf.encode("utf-8")
        digest = hashlib.blake2b(text, digest_size=16).digest()
        with self._lock:  # preparation threads call this side by side
            if digest in self._good_grammars:
                self._good_grammars.move_to_end(digest)
                return
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, text, b"root")
        if not sampler:
            raise InvalidRequest("the grammar built for this request does not compile in "
                                 "llama.cpp; simplify the schema", param="response_format")
        llama_cpp.llama_sampler_free(sampler)
        with self._lock:
            self._good_grammars[digest] = None
            if len(self._good_grammars) > GOOD_GRAMMARS:
                self._good_grammars.popitem(last=False)

    def _preserved_ids(self, texts) -> frozenset:
        ids = set()
        for text in texts:
            if text not in self._preserve_ids:
                found = self.tokenize(text)
                self._preserve_ids[text] = found[0] if len(found) == 1 else None
            if self._preserve_ids[text] is not None:
                ids.add(self._preserve_ids[text])
        return frozenset(ids)

    def submit(self, tokens: list[int], params: SamplingParams, n: int = 1,
               preserve: tuple[str, ...] = ()) -> Generation:
        """Queue a job; its events arrive on the calling event loop.

        `preserve` names control tokens (`[TOOL_CALLS]`, `<think>`…) whose text the output
        parsers need; other control tokens stay invisible.
        """
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="prompt")
        self.check_prompt(tokens)
        if params.grammar:
            self.check_grammar(params.grammar)
        bad = [t for t in params.logit_bias if not 0 <= t < self.n_vocab]
        if bad:
            raise InvalidRequest(f"logit_bias names token id {bad[0]}, outside this model's "
                                 f"vocabulary of {self.n_vocab}", param="logit_bias")
        with self._lock:
            if self.broken is not None:
                raise self.broken
            if self._closed:
                raise ServiceUnavailable(f"{self.model_id} was unloaded; retry the request",
                                         headers={"Retry-After": "1"})
            if self._queued >= self.max_queue:
                raise QueueFull(f"{self._queued} requests are already waiting for {self.model_id}; "
                                "retry shortly", headers={"Retry-After": "1"})
            self._queued += 1
        out = Generation(asyncio.get_running_loop())
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        job = _Job(list(tokens), params, n, out, self._preserved_ids(preserve), seed=seed)
        with self._lock:
            self._jobs.add(job)
        self._queue.put(job)
        return out

    def abort_all(self, error: Exception) -> None:
        """Fail every queued and running job with `error` (shutdown): their clients hear why."""
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.out._send(JobFailed(error))
            job.out.cancel()

    def close(self) -> None:
        """Cancel queued and running work, stop the loop, free the context and the model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.out.cancel()
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.cache.clear()
        self._batch.close()
        self._ctx.close()
        self._model.close()
        release_freed_memory()
        log.info("unloaded %s", self.model_id)

    # ---- the loop thread ------------------------------------------------------------------
    def _worker(self) -> None:
        events: list = []
        try:
            while not self._closed:
                active = [s.task for s in self._slots if s.task is not None]
                if not active and not self._waiting:
                    job = self._queue.get()  # idle: sleep until there is work
                    if job is None:
                        break
                    self._waiting.append(job)
                self._take_queued()
                self._admit(events)
                self._step(events)
                if events:
                    self._flush(events)
        except Exception as exc:  # noqa: BLE001 - tell every caller rather than hang them
            log.exception("the decode loop of %s failed", self.model_id)
            self._fail_all(exc, events)
        finally:
            self._end_everything()

    def _take_queued(self) -> None:
        while not self._queue.empty():  # only this thread takes: not empty means get succeeds
            job = self._queue.get_nowait()
            if job is None:
                self._closed = True
                return
            self._waiting.append(job)

    def _flush(self, events: list) -> None:
        by_loop: dict = {}
        for out, event in events:
            by_loop.setdefault(out._loop, []).append((out, event))
        events.clear()
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that event loop is gone
                for out, _ in items:
                    out.cancelled.set()

    def _finish_job(self, job: _Job, events: list) -> None:
        with self._lock:
            self._jobs.discard(job)
        events.append((job.out, None))

    def _dequeue(self, job: _Job) -> None:
        with self._lock:
            self._queued -= 1

    # ---- admission: a waiting choice gets a slot --------------------------------------------
    def _admit(self, events: list) -> None:
        while self._waiting:
            job = self._waiting[0]
            if job.out.cancelled.is_set():
                self._end_tasks_of(job, events)
                self._maybe_finish(job, events)
                continue
            if job.admitted and job.lead is not None and job.lead.state == "prefill":
                return  # siblings copy the lead's prompt once it is in the cache
            idle = [s for s in self._slots if s.task is None and s.seq not in self._copy_to
                    and s.seq not in self._copy_from]
            if not idle:
                return
            try:
                sampler = Sampler(job.params, (job.seed + job.admitted) & 0xFFFFFFFF,
                                  self._model, self.n_vocab)
            except Exception as exc:  # noqa: BLE001 - this request's fault, not the model's
                self._fail_job(job, exc, events)
                continue
            self._start_task(job, idle, sampler, events)
            if job.admitted == job.n:
                self._waiting.popleft()
                self._dequeue(job)

    def _start_task(self, job: _Job, idle: list[_Slot], sampler: Sampler, events: list) -> None:
        prompt = job.prompt
        limit = max(len(prompt) - 2, 0)  # the last two are always evaluated (see the docstring)
        own = {id(s): min(common_prefix(as_tokens(s.tokens), prompt), limit) for s in self._slots}
        slot = self._choose_slot(idle, own, len(prompt))
        reuse = own[id(slot)]
        donor = max((s for s in self._slots if s is not slot and s.seq not in self._copy_to),
                    key=lambda s: own[id(s)], default=None)
        entry, from_cache = self.cache.best(prompt) if self.cache.enabled else (None, 0)
        from_cache = min(from_cache, limit)
        self._save(slot, keep=reuse)
        source = choose_source(reuse, self._sources(reuse, donor, own, entry, from_cache),
                              self.rates.prefill_s_per_token)
        if source is None:
            if self.cache.enabled and limit >= MIN_SAVE_TOKENS:
                self.cache.stats.misses += 1
            self._seq_rm(slot.seq, reuse)
            slot.tokens = slot.tokens[:reuse]
        elif source.kind == "stream":
            # across KV streams llama.cpp copies a whole stream (on the next decode); then trim
            llama_cpp.llama_memory_seq_cp(self._mem, donor.seq, slot.seq, -1, -1)
            self._copy_from.add(donor.seq)
            self._copy_to.add(slot.seq)
            reuse = source.tokens
            self._seq_rm(slot.seq, reuse)
            slot.tokens = list(prompt[:reuse])
        else:
            if source.kind == "state":
                data = self._state_of(donor.seq, source.bytes_moved // 2)  # out, then in
            else:
                data = (ctypes.c_uint8 * len(entry.data)).from_buffer(entry.data)  # no copy
            reuse = source.tokens if data is not None and self._set_state(slot.seq, data) else 0
            self._seq_rm(slot.seq, reuse)
            slot.tokens = list(prompt[:reuse])
            if source.kind == "cache" and reuse:
                self.cache.stats.hits += 1
                self.cache.touch(entry)
        index = job.admitted
        job.admitted += 1
        params = job.params
        room = self.n_ctx - len(prompt)
        task = _Task(job, index, slot, sampler, budget=min(params.max_tokens or room, room),
                     stops=StopMatcher(params.stop))
        slot.task = task
        slot.last_used = time.monotonic()
        if index == 0:
            job.lead = task
            events.append((job.out, PromptDone(len(prompt), reuse)))

    @staticmethod
    def _choose_slot(idle: list[_Slot], own: dict, prompt_len: int) -> _Slot:
        """The idle slot whose cache covers most of this prompt, if that is at least half of it
        (llama.cpp's server uses the same similarity rule); else an empty slot; else the least
        recently used one (whose conversation then moves to the prompt cache)."""
        similar = [s for s in idle if own[id(s)] >= SLOT_SIMILARITY * prompt_len]
        if similar:
            return max(similar, key=lambda s: (own[id(s)], -s.last_used))
        empty = [s for s in idle if not s.tokens]
        return empty[0] if empty else min(idle, key=lambda s: s.last_used)

    def _sources(self, reuse: int, donor: _Slot | None, own: dict, entry,
                 from_cache: int) -> list[Source]:
        """Where more of the prompt than the slot's own `reuse` tokens could come from, each
        with what moving it costs."""
        sources = []
        if donor is not None and own[id(donor)] > reuse:
            tokens = own[id(donor)]
            if self.kv_unified:  # one pool: the copy only marks the donor's cells as shared
                sources.append(Source("stream", tokens, 0, 1.0))
            else:
                size = llama_cpp.llama_state_seq_get_size(self._ctx.ctx, donor.seq)
                stream = size * self.n_ctx // max(len(donor.tokens), 1)  # every cell, all layers
                sources.append(Source("stream", tokens, stream, self.rates.stream_bytes_per_s))
                sources.append(Source("state", tokens, 2 * size, self.rates.host_bytes_per_s))
        if entry is not None and from_cache > reuse:
            sources.append(Source("cache", from_cache, len(entry.data), self.rates.host_bytes_per_s))
        return sources

    def _state_of(self, seq: int, size: int):
        """The `size` bytes of sequence `seq`'s cells, copied out to a host buffer (kept for the
        next copy unless larger than MAX_SCRATCH); None if it could not be had."""
        buf = self._scratch
        if len(buf) < size:
            try:
                buf = bytearray(size)  # faulting fresh pages in costs more than the copy
            except MemoryError:
                return None  # the prompt is read instead
            self._scratch = buf if size <= MAX_SCRATCH else self._scratch
        data = (ctypes.c_uint8 * size).from_buffer(buf)
        started = time.perf_counter()
        written = llama_cpp.llama_state_seq_get_data(self._ctx.ctx, data, size, seq)
        self.rates.copied(written, time.perf_counter() - started)
        return (ctypes.c_uint8 * written).from_buffer(buf) if written else None

    def _set_state(self, seq: int, data) -> bool:
        """Replace sequence `seq`'s cells with a state from `llama_state_seq_get_data`."""
        self._seq_rm(seq, 0)
        started = time.perf_counter()
        ok = bool(llama_cpp.llama_state_seq_set_data(self._ctx.ctx, data, len(data), seq))
        self.rates.copied(len(data), time.perf_counter() - started)
        return ok

    def _save(self, slot: _Slot, keep: int) -> None:
        """Before a slot is cut back to `keep` tokens for another conversation, keep its
        sequence in the prompt cache (unless it holds little, or the cache has it already)."""
        if not self.cache.enabled or len(slot.tokens) - keep < MIN_SAVE_TOKENS:
            return
        tokens = as_tokens(slot.tokens)
        if self.cache.covers(tokens):
            return
        size = llama_cpp.llama_state_seq_get_size(self._ctx.ctx, slot.seq)
        if not size or size > self.cache.capacity:
            return
        buf = (ctypes.c_uint8 * size)()
        started = time.perf_counter()
        written = llama_cpp.llama_state_seq_get_data(self._ctx.ctx, buf, size, slot.seq)
        self.rates.copied(written, time.perf_counter() - started)
        if written:  # kept in the buffer llama.cpp wrote: a state is megabytes, not copied twice
            self.cache.put(tokens, memoryview(buf)[:written])

    def _seq_rm(self, seq: int, start: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._mem, seq, start, -1)

    # ---- one step: the streams' next tokens, then prompt pieces ------------------------------
    def _step(self, events: list) -> None:
        for s in self._slots:
            if s.task is not None and s.task.job.out.cancelled.is_set():
                self._end_task(s.task, events, None)
        decoding = [s.task for s in self._slots if s.task is not None and s.task.state == "generate"]
        if decoding:
            self._decode_streams(decoding, events)
            if events:
                self._flush(events)  # the streams' tokens go out before any prompt is read
        budget = PREFILL_CHUNK_WHILE_DECODING if decoding else self._prefill_step
        for slot in self._slots:
            task = slot.task
            if task is None or task.state != "prefill" or task.job.out.cancelled.is_set():
                continue
            done, total = len(slot.tokens), len(task.job.prompt)
            n = prompt_piece(done, total, budget, self._n_ubatch)
            if n <= 0:
                continue
            budget -= n
            final = done + n == total
            part = task.job.prompt[done:done + n]
            self._batch.clear()
            task.out_index = self._batch.add(part, done, slot.seq, final)
            # prefill speed for engine.reuse: not when a pending stream copy runs inside this
            # decode, and on a GPU (where decode returns before the work is done) only for a
            # prompt's last piece, whose logits are waited for next anyway
            timed = not self._copy_to and (final or not self.rates.on_gpu)
            started = time.perf_counter()
            if not self._decode_or_make_room([task], events):
                continue
            if timed:
                if self.rates.on_gpu:
                    llama_cpp.llama_synchronize(self._ctx.ctx)
                self.rates.prefilled(n, time.perf_counter() - started)
            slot.tokens.extend(int(x) for x in part)
            self.prompt_tokens_evaluated += n
            if final:
                task.state = "generate"
                self._sample_or_fail(task, events)
            if budget <= 0:
                break

    def _decode_streams(self, tasks: list[_Task], events: list) -> None:
        """One batch: the pending token of every generating slot, in slot order (llama.cpp packs
        consecutive KV streams into one ubatch)."""
        batch = self._batch
        batch.clear()
        for t in tasks:
            t.out_index = batch.add([t.pending], len(t.slot.tokens), t.slot.seq, True)
        if not self._decode_or_make_room(tasks, events):
            return
        for t in tasks:
            t.slot.tokens.append(t.pending)
            self._sample_or_fail(t, events)

    def _sample_or_fail(self, task: _Task, events: list) -> None:
        """Sample a task's next token; a fault there ends that request alone."""
        try:
            self._sample(task, events)
        except Exception as exc:  # noqa: BLE001 - one request's fault, not the model's
            self._fail_job(task.job, exc, events)

    def _fail_job(self, job: _Job, exc: Exception, events: list) -> None:
        """End one request with an error: its own (a LocalgwError), or a 500 for a bug. The
        error goes out before the job's end, and its choices leave their slots."""
        if not isinstance(exc, LocalgwError):
            log.exception("a request on %s failed", self.model_id, exc_info=exc)
            exc = LocalgwError(f"this request failed in the engine ({type(exc).__name__}: {exc})")
        events.append((job.out, JobFailed(exc)))
        job.out.cancel()
        self._end_tasks_of(job, events)
        self._maybe_finish(job, events)

    def _decode_or_make_room(self, tasks: list[_Task], events: list) -> bool:
        """Decode the batch; on failure, free room (or fail) and report False: the caller's
        tasks are then retried on the next step, or ended."""
        rc = self._batch.decode(self._ctx.ctx)
        self._copy_to.clear()  # pending stream copies ran at the start of that decode
        self._copy_from.clear()
        if rc == 0:
            return True
        self._make_room(rc, tasks, events)
        return False

    def _make_room(self, rc: int, tasks: list[_Task], events: list) -> None:
        """A decode of `tasks` failed. No free KV cells (rc 1, a shared pool only): give idle
        slots' cells back; if there are none, a prompt waits for the next step, and a stream
        that cannot grow ends with `length`. Anything else fails them."""
        for t in tasks:  # what the failed call may have left behind
            self._seq_rm(t.slot.seq, len(t.slot.tokens))
        if rc != 1:
            error = ServiceUnavailable(f"llama_decode failed ({rc}) for {self.model_id}")
            for t in tasks:
                events.append((t.job.out, JobFailed(error)))
                t.job.out.cancel()
                self._end_task(t, events, None)
            return
        idle = [s for s in self._slots if s.task is None and s.tokens]
        if idle:
            for s in idle:
                self._save(s, keep=0)
                self._seq_rm(s.seq, 0)
                s.tokens = []
            return
        running = [s.task for s in self._slots if s.task is not None]
        if any(t.state == "prefill" for t in tasks) and any(t.state == "generate" for t in running):
            return  # the prompt waits until a stream ends
        victim = max(running, key=lambda t: len(t.slot.tokens))
        log.warning("%s: the KV cache is full with %d requests; ending the longest (%d tokens)",
                    self.model_id, len(running), len(victim.slot.tokens))
        self._end_task(victim, events, "length")

    def _sample(self, task: _Task, events: list) -> None:
        job = task.job
        params = job.params
        row = None
        if params.logprobs or task.sampler.needs_row:
            row = self._logits_row(task.out_index)
        logits = row.copy() if params.logprobs else None
        token = task.sampler.sample(self._ctx.ctx, task.out_index, row)
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._end_task(task, events, "stop")
            return
        task.generated += 1
        text = task.stops.feed(task.decoder.decode(self._piece(token, token in job.preserve)))
        logprob = self._logprob(token, logits, params.top_logprobs) if logits is not None else None
        events.append((job.out, TokenText(task.index, text, logprob)))
        if task.stops.stopped:
            self._end_task(task, events, "stop")
        elif task.generated >= task.budget:
            self._end_task(task, events, "length")
        else:
            task.pending = token

    def _logits_row(self, index: int) -> np.ndarray:
        """The logits of batch row `index`, as a numpy view. Views are kept by address (the
        output buffer moves only when llama.cpp grows it): making one with `np.ctypeslib.as_array`
        every token would be a large part of a step's Python."""
        address = _logits_address(self._ctx.ctx, index)
        row = self._rows.get(address)
        if row is None:
            if len(self._rows) >= 1024:
                self._rows.clear()
            ptr = ctypes.cast(address, ctypes.POINTER(ctypes.c_float))
            row = self._rows[address] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        return row

    def _end_task(self, task: _Task, events: list, finish: str | None) -> None:
        """Free the slot (its KV stays, for the next request with the same prefix). `finish`
        None: cancelled or failed, no ChoiceDone."""
        job = task.job
        if finish is not None:
            if not task.stops.stopped:
                tail = task.stops.feed(task.decoder.decode(b"", final=True))
                tail += "" if task.stops.stopped else task.stops.flush()
                if tail:
                    events.append((job.out, TokenText(task.index, tail)))
            events.append((job.out, ChoiceDone(task.index, finish, task.generated,
                                               task.stops.matched)))
        task.sampler.close()
        task.slot.task = None
        task.slot.last_used = time.monotonic()
        job.finished += 1
        self._maybe_finish(job, events)

    def _maybe_finish(self, job: _Job, events: list) -> None:
        """A job ends (its caller's iteration stops) when all its choices are done, or when it was
        cancelled and none of its choices still runs."""
        if job.done:
            return
        if job.finished >= job.n or (job.out.cancelled.is_set() and not self._has_running(job)):
            if job in self._waiting:
                self._waiting.remove(job)
                self._dequeue(job)
            job.done = True
            self._finish_job(job, events)

    def _has_running(self, job: _Job) -> bool:
        return any(s.task is not None and s.task.job is job for s in self._slots)

    def _end_tasks_of(self, job: _Job, events: list) -> None:
        for s in self._slots:
            if s.task is not None and s.task.job is job:
                self._end_task(s.task, events, None)

    def _fail_all(self, exc: Exception, events: list) -> None:
        """The loop failed: the runner is broken (the manager retires it and loads the model
        afresh for the next request), and every job in it ends with a 500."""
        error = ModelFailed(f"the decode loop of {self.model_id} failed ({type(exc).__name__}: "
                            f"{exc}); the model is reloaded for the next request")
        with self._lock:
            self.broken = error
            jobs = list(self._jobs)
        for job in jobs:
            events.append((job.out, JobFailed(error)))
        self._flush(events)  # before _end_everything's ends

    def _end_everything(self) -> None:
        """The loop stops: whoever still waits gets an end, and no sampler is leaked."""
        events: list = []
        for s in self._slots:
            if s.task is not None:
                s.task.sampler.close()
                s.task = None
        self._take_queued()
        with self._lock:
            jobs = list(self._jobs)
            self._jobs.clear()
            self._queued = 0
        self._waiting.clear()
        for job in jobs:
            events.append((job.out, None))
        self._flush(events)

    # ---- sampling helpers -----------------------------------------------------------------
    def _piece(self, token: int, special: bool = False) -> bytes:
        key = -token - 1 if special else token
        piece = self._piece_cache.get(key)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
            if n > 64:  # rare very long piece
                buf = ctypes.create_string_buffer(n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, n, 0, special)
            piece = self._piece_cache[key] = buf.raw[:max(n, 0)]
        return piece

    def _logprob(self, token: int, logits: np.ndarray, top_n: int) -> TokenLogprob:
        shifted = logits - logits.max()
        lse = float(np.log(np.exp(shifted).sum()))
        top: list[TopLogprob] = []
        if top_n:
            ids = np.argpartition(-shifted, top_n)[:top_n]
            for t in ids[np.argsort(-shifted[ids])]:
                raw = self._piece(int(t))
                top.append(TopLogprob(raw.decode("utf-8", "replace"), float(shifted[t]) - lse,
                                      list(raw)))
        raw = self._piece(token)
        return TokenLogprob(raw.decode("utf-8", "replace"), float(shifted[token]) - lse,
                            list(raw), top)


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


def default_cache_ram() -> int:
    """min(2 GiB, 10% of the machine's RAM)."""
    from localgw.engine.devices import system_memory

    total, _free = system_memory()
    return int(min(2 * 2 ** 30, total * 0.10))
