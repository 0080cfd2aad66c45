"""LlamaRunner: the one owner of a llama.cpp context.

HTTP handlers never touch the context. They `submit` a job; the runner's worker thread takes jobs
from a FIFO queue one at a time, decodes, and sends events back to the caller's event loop. A job
whose caller left is skipped (queued) or stopped between two tokens (running).
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals
from llama_cpp.llama_grammar import LlamaGrammar

from localgw.chat.stops import StopMatcher
from localgw.engine.llamalog import capture_buffers
from localgw.engine.threads import default_threads
from localgw.engine.types import (ChoiceDone, Event, JobFailed, LoadOptions, PromptDone,
                                  SamplingParams, TokenLogprob, TokenText, TopLogprob)
from localgw.errors import ContextLengthExceeded, InvalidRequest, ModelLoadError, QueueFull

log = logging.getLogger("localgw.engine")

PENALTY_LAST_N = 64


def gpu_offload_supported() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


def system_info() -> str:
    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()


class Generation:
    """The caller's end of a job: async-iterate events; `cancel()` frees the model."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()

    def _send(self, event: Event | None) -> None:  # called from the worker thread
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop is gone: nobody listens any more
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


@dataclass(eq=False)
class _Job:
    tokens: list[int]
    params: SamplingParams
    n: int
    out: Generation
    preserve: frozenset = frozenset()  # control token ids rendered as text


class LlamaRunner:
    """Owns one loaded model and its context; serves jobs one at a time from a bounded queue."""

    def __init__(self, model_id: str, path: str, options: LoadOptions):
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
        self.n_batch = options.n_batch
        started = time.monotonic()
        try:
            with capture_buffers() as buffers:
                self.llm = llama_cpp.Llama(
                    # the context is planned by engine.fit (ModelManager); 0: the trained one
                    model_path=path, n_ctx=options.n_ctx or 0,
                    n_threads=self.n_threads, n_threads_batch=self.n_threads_batch,
                    n_gpu_layers=self.n_gpu_layers, n_batch=options.n_batch,
                    n_ubatch=options.n_batch, logits_all=False, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"could not load {model_id} from {path}: {exc}") from exc
        self.buffers = dict(buffers)  # what llama.cpp reports it allocated, by kind and device
        self.load_seconds = time.monotonic() - started
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        self._model = self.llm._model
        self._vocab = llama_cpp.llama_model_get_vocab(self._model.model)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._queued = 0
        self._running: _Job | None = None
        self._jobs: set[_Job] = set()  # submitted and not yet finished
        self._lock = threading.Lock()
        self._closed = False
        self._piece_cache: dict[int, bytes] = {}
        self._good_grammars: set[str] = set()
        self._preserve_ids: dict[str, int | None] = {}
        self._thread = threading.Thread(target=self._worker, name=f"llama:{model_id}", daemon=True)
        self._thread.start()
        log.info("loaded %s (ctx %d, threads %d/%d, gpu layers %d) in %.2fs", model_id, self.n_ctx,
                 self.n_threads, self.n_threads_batch, self.n_gpu_layers, self.load_seconds)

    # ---- facts the chat layer needs -------------------------------------------------------
    @property
    def memory_bytes(self) -> int:
        return sum(self.buffers.values())

    @property
    def metadata(self) -> dict[str, str]:
        return self.llm.metadata

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
        return self._running is not None or self._queued > 0

    def check_prompt(self, tokens: list[int]) -> None:
        """A prompt must leave room for at least one generated token: else a 400, never a cut."""
        if len(tokens) >= self.n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, your "
                f"prompt is {len(tokens)} tokens, which leaves no room for a reply. Shorten the "
                f"prompt or start the server with a larger --ctx.", param="messages")

    def check_grammar(self, gbnf: str) -> None:
        """Parse a grammar once with this model's vocabulary; a bad one is a 400, not a crash."""
        if gbnf in self._good_grammars:
            return
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode("utf-8"), b"root")
        if not sampler:
            raise InvalidRequest("the grammar built for this request does not compile in "
                                 "llama.cpp; simplify the schema", param="response_format")
        llama_cpp.llama_sampler_free(sampler)
        self._good_grammars.add(gbnf)

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
        self.check_prompt(tokens)
        if params.grammar:
            self.check_grammar(params.grammar)
        bad = [t for t in params.logit_bias if not 0 <= t < self.n_vocab]
        if bad:
            raise InvalidRequest(f"logit_bias names token id {bad[0]}, outside this model's "
                                 f"vocabulary of {self.n_vocab}", param="logit_bias")
        with self._lock:
            if self._closed:
                from localgw.errors import ServiceUnavailable
                raise ServiceUnavailable("the server is shutting down")
            if self._queued >= self.max_queue:
                raise QueueFull(f"{self._queued} requests are already waiting for {self.model_id}; "
                                "retry shortly", headers={"Retry-After": "1"})
            self._queued += 1
        out = Generation(asyncio.get_running_loop())
        job = _Job(tokens, params, n, out, self._preserved_ids(preserve))
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
        """Cancel queued and running work, stop the worker, free the model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._running is not None:
            self._running.out.cancel()
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.llm.close()
        log.info("unloaded %s", self.model_id)

    # ---- the worker thread --------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            with self._lock:
                self._queued -= 1
                self._running = job
            try:
                if not job.out.cancelled.is_set() and not self._closed:
                    self._run(job)
            except Exception as exc:  # noqa: BLE001 - a failed job must never kill the worker
                log.exception("generation failed for %s", self.model_id)
                job.out._send(JobFailed(exc))
            finally:
                with self._lock:
                    self._running = None
                    self._jobs.discard(job)
                job.out._send(None)
        while True:  # drain: whoever still waits gets an end
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.out._send(None)

    def _load_prompt(self, tokens: list[int], cancelled: threading.Event) -> int | None:
        """Bring the KV cache to `tokens`, reusing the longest common prefix. Returns reused count."""
        llm = self.llm
        cached = llm.input_ids[:llm.n_tokens]
        limit = min(len(cached), len(tokens) - 1)  # always evaluate at least one token
        prefix = 0
        if limit > 0:
            diff = np.nonzero(cached[:limit] != np.asarray(tokens[:limit], dtype=cached.dtype))[0]
            prefix = int(diff[0]) if len(diff) else limit
        if prefix < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, prefix, -1):
            prefix = 0
            llm.reset()
        llm.n_tokens = prefix
        rest = tokens[prefix:]
        for i in range(0, len(rest), self.n_batch):
            if cancelled.is_set():
                return None
            llm.eval(rest[i:i + self.n_batch])
        return prefix

    def _sampler(self, params: SamplingParams, seed: int) -> internals.LlamaSampler:
        sampler = internals.LlamaSampler()
        if params.logit_bias:
            sampler.add_logit_bias(self.n_vocab, params.logit_bias)
        if (params.repeat_penalty != 1.0 or params.frequency_penalty or params.presence_penalty):
            sampler.add_penalties(self.n_vocab, PENALTY_LAST_N, params.repeat_penalty,
                                  params.frequency_penalty, params.presence_penalty)
        if params.grammar:
            sampler.add_grammar(self._model, LlamaGrammar.from_string(params.grammar, verbose=False))
        if params.temperature <= 0.0:
            sampler.add_greedy()
            return sampler
        if params.top_k > 0:
            sampler.add_top_k(params.top_k)
        if params.top_p < 1.0:
            sampler.add_top_p(params.top_p, 1)
        if params.min_p > 0.0:
            sampler.add_min_p(params.min_p, 1)
        sampler.add_temp(params.temperature)
        sampler.add_dist(seed)
        return sampler

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

    def _run(self, job: _Job) -> None:
        llm, params, out = self.llm, job.params, job.out
        cancelled = out.cancelled
        base_seed = params.seed if params.seed is not None else random.getrandbits(32)
        for index in range(job.n):
            reused = self._load_prompt(job.tokens, cancelled)
            if reused is None:
                return
            if index == 0:
                out._send(PromptDone(len(job.tokens), reused))
            room = self.n_ctx - len(job.tokens)
            budget = min(params.max_tokens or room, room)
            sampler = self._sampler(params, (base_seed + index) & 0xFFFFFFFF)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = StopMatcher(params.stop)
            generated, finish = 0, "length"
            while True:
                if cancelled.is_set():
                    return
                logits = None
                if params.logprobs:
                    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
                    logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
                token = sampler.sample(llm._ctx, -1)
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                generated += 1
                text = stops.feed(decoder.decode(self._piece(token, token in job.preserve)))
                logprob = self._logprob(token, logits, params.top_logprobs) if logits is not None else None
                out._send(TokenText(index, text, logprob))
                if stops.stopped:
                    finish = "stop"
                    break
                if generated >= budget:
                    break
                llm.eval([token])
            if not stops.stopped:
                tail = stops.feed(decoder.decode(b"", final=True))
                tail += "" if stops.stopped else stops.flush()
                if tail:
                    out._send(TokenText(index, tail))
            out._send(ChoiceDone(index, finish, generated, stops.matched))
