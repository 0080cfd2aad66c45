"""The embedding room: pooled vectors and rank scores from a loaded model, on its loop thread.

Design:
- Contexts. Embeddings need a llama.cpp context with `embeddings` on and a pooling type, which a
  chat context must not have (its slots want logits). So a model's first embedding request makes
  a second context on the same `llama_model` (`EmbedWork`): the weights are shared, the context
  costs only its own buffers. Its pooling is the GGUF's (`{arch}.pooling_type`: mean, cls, last,
  rank), mean for a model without one (a decoder-only chat model). An encoder-only model (BERT
  and its kin: embedding models and rerankers) has no decoder; the runner refuses chat on it
  with a 400 (`generates` below), and its chat context holds no KV cache.
- Bounds. One input is at most `max_tokens`: the model's trained context, the chat context a
  request may use (decoder models), and MAX_EMBED_TOKENS, whichever is least. llama.cpp pools a
  sequence only when all of it is in one ubatch, so the context's batch and ubatch are both
  `max_tokens`, and its KV (decoder models) one pool of as many cells shared by MAX_SEQS
  sequences. Callers check every input before it is queued (`check_inputs`: at least one token,
  at most `max_tokens`, every id inside the vocabulary); nothing unchecked reaches llama.cpp.
- Batching. Many inputs share one decode: each turn of the model's loop (engine.loop) takes, in
  order, as many of the queued inputs as fit `max_tokens` tokens and MAX_SEQS sequences (a
  request's inputs, then the next request's), each its own sequence from position 0, every token
  an output, as llama.cpp's pooling needs; then the KV cells are cleared. While chat streams
  run, a turn's piece is at most STREAMING_PIECE tokens (one input longer than that goes alone),
  so a big embedding request does not hold the streams up for long; the chat context and this
  one are never decoded at once, since only the loop thread decodes either.
- Results. A pooled vector is L2-normalised (in float64, as llama.cpp's `common_embd_normalize`);
  a reranker's score is its classification head's first output, raw, as llama.cpp's server
  reports it. A request's vectors go back in one `Embedded` event when its last input is done.
- Rerank prompts are formatted as llama.cpp's server does (`format_prompt_rerank`): the GGUF's
  `rerank` template with `{query}` and `{document}` filled in, else
  `[BOS] query [EOS] [SEP] document [EOS]`, each part only where the vocabulary adds it.

Only the loop thread touches the embedding context; tokenizing (`embedding_tokens`,
`rerank_tokens`) only reads the vocabulary and runs on callers' threads.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from localgw.engine.batch import Batch
from localgw.engine.generation import Generation
from localgw.engine.types import ENCODER_ARCHITECTURES, EmbeddingInfo, Embedded, JobFailed
from localgw.errors import ContextLengthExceeded, InvalidRequest, LocalgwError, ServiceUnavailable

log = logging.getLogger("localgw.engine")

MAX_EMBED_TOKENS = 8192  # longest input (also the embedding context's batch and KV cells)
MAX_SEQS = 64            # sequences in one embedding decode
STREAMING_PIECE = 512    # tokens in one turn's embedding decode while chat streams run
PLAIN_ATTENTION_BYTES = 256 << 20  # attention scores up to this size: no flash attention
POOLING_NAMES = {llama_cpp.LLAMA_POOLING_TYPE_MEAN: "mean", llama_cpp.LLAMA_POOLING_TYPE_CLS: "cls",
                 llama_cpp.LLAMA_POOLING_TYPE_LAST: "last", llama_cpp.LLAMA_POOLING_TYPE_RANK: "rank"}


def gguf_pooling(metadata: dict) -> int:
    """The GGUF's pooling type (`{arch}.pooling_type`); mean when it names none."""
    arch = metadata.get("general.architecture", "")
    try:
        pooling = int(metadata.get(f"{arch}.pooling_type", -1))
    except (TypeError, ValueError):
        pooling = -1
    return pooling if pooling in POOLING_NAMES else llama_cpp.LLAMA_POOLING_TYPE_MEAN


def embedding_info(model) -> EmbeddingInfo:
    """What a loaded model (engine.model.Model) embeds: pooling, vector size, longest input."""
    llama = model.llama.model
    pooling = gguf_pooling(model.metadata)
    generates = model.metadata.get("general.architecture") not in ENCODER_ARCHITECTURES
    limit = model.llama.n_ctx_train()
    if generates:
        limit = min(limit, model.n_ctx)
    if pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK:
        size = max(1, llama_cpp.llama_model_n_cls_out(llama))
    else:
        size = llama_cpp.llama_model_n_embd_out(llama) or llama_cpp.llama_model_n_embd(llama)
    return EmbeddingInfo(pooling=POOLING_NAMES[pooling], dimensions=int(size),
                         max_tokens=max(1, min(limit, MAX_EMBED_TOKENS)), generates=generates,
                         reranks=pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK)


# ---- tokens (callers' threads: the vocabulary only) ---------------------------------------------
def embedding_tokens(model, text: str) -> list[int]:
    """An input's tokens as llama.cpp's server makes them: the vocabulary's own special tokens
    added (BOS, or CLS and SEP), special-token text parsed."""
    return model.llama.tokenize(text.encode("utf-8"), True, True)


def rerank_tokens(model, query: str, document: str) -> list[int]:
    """One query/document pair, formatted as llama.cpp's server formats it (see above)."""
    llama, vocab = model.llama, model.vocab
    template = llama_cpp.llama_model_chat_template(llama.model, b"rerank")
    if template:
        prompt = template.decode("utf-8", errors="replace")
        prompt = prompt.replace("{query}", query).replace("{document}", document)
        return llama.tokenize(prompt.encode("utf-8"), False, True)
    q = llama.tokenize(query.encode("utf-8"), False, False)
    d = llama.tokenize(document.encode("utf-8"), False, False)
    eos = llama_cpp.llama_vocab_eos(vocab)
    if eos < 0:
        eos = llama_cpp.llama_vocab_sep(vocab)
    add_eos = llama_cpp.llama_vocab_get_add_eos(vocab) and eos >= 0
    tokens = [llama_cpp.llama_vocab_bos(vocab)] if llama_cpp.llama_vocab_get_add_bos(vocab) else []
    tokens += q + ([eos] if add_eos else [])
    if llama_cpp.llama_vocab_get_add_sep(vocab):
        tokens.append(llama_cpp.llama_vocab_sep(vocab))
    return tokens + d + ([eos] if add_eos else [])


def check_inputs(inputs: list[list[int]], info: EmbeddingInfo, n_vocab: int,
                 param: str = "input") -> None:
    """Every input is 1..max_tokens tokens of this vocabulary: else a 400 naming the input."""
    for i, tokens in enumerate(inputs):
        where = f"{param}[{i}]" if len(inputs) > 1 else param
        if not tokens:
            raise InvalidRequest(f"{where} is empty; send at least one token of text", param=param)
        if len(tokens) > info.max_tokens:
            raise ContextLengthExceeded(
                f"{where} is {len(tokens)} tokens, over this model's limit of {info.max_tokens} "
                f"tokens for one input; shorten or split it", param=param)
        bad = next((t for t in tokens if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise InvalidRequest(f"{where} has token id {bad}, outside this model's vocabulary "
                                 f"of {n_vocab}", param=param)


# ---- the loop thread ---------------------------------------------------------------------------
@dataclass(eq=False)
class EmbedJob:
    """One request's inputs (checked), and where its result goes."""

    inputs: list[list[int]]
    out: Generation
    done: int = 0                      # inputs decoded so far
    rows: list = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(len(t) for t in self.inputs)


class EmbedWork:
    """A model's embedding jobs and the context that runs them (made on first use). `queue` is
    the model's job queue (engine.jobs): embedding jobs are reserved and put there like chat
    jobs (one bound, one FIFO, one wake-up), and the loop hands them over with `take`."""

    def __init__(self, model_id: str, model, info: EmbeddingInfo, queue, *, n_threads: int,
                 n_threads_batch: int, flash_attn: int):
        self.model_id, self.model, self.info, self.queue = model_id, model, info, queue
        self._settings = (n_threads, n_threads_batch, flash_attn)
        self._context = None
        self._batch: Batch | None = None
        self.jobs: deque[EmbedJob] = deque()

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def take(self, waiting: deque) -> None:
        """Move the embedding jobs out of the loop's waiting queue (chat jobs stay there); they
        leave the count of queued requests."""
        if not any(isinstance(job, EmbedJob) for job in waiting):
            return
        for job in [job for job in waiting if isinstance(job, EmbedJob)]:
            waiting.remove(job)
            self.queue.dequeue()
            self.jobs.append(job)

    def step(self, events: list, *, streaming: bool) -> None:
        """One decode: the next inputs in order, as many as one piece holds (see above)."""
        for job in [job for job in self.jobs if job.out.cancelled.is_set()]:
            self.jobs.remove(job)
            self.queue.finish(job, events)
        if not self.jobs:
            return
        piece = self._piece(STREAMING_PIECE if streaming else self.info.max_tokens)
        try:
            rows = self._decode([job.inputs[i] for job, i in piece])
        except LocalgwError as exc:
            self._fail([job for job, _ in piece], exc, events)
            return
        for (job, _), row in zip(piece, rows):
            job.rows.append(row)
            job.done += 1
            if job.done == len(job.inputs):
                self.jobs.remove(job)
                events.append((job.out, Embedded(np.stack(job.rows), job.tokens)))
                self.queue.finish(job, events)

    def _piece(self, budget: int) -> list[tuple[EmbedJob, int]]:
        """The next inputs in order: at most MAX_SEQS of them and `budget` tokens (at least one)."""
        piece, used = [], 0
        for job in self.jobs:
            for i in range(job.done, len(job.inputs)):
                n = len(job.inputs[i])
                if piece and (used + n > budget or len(piece) >= MAX_SEQS):
                    return piece
                piece.append((job, i))
                used += n
        return piece

    def _fail(self, jobs: list[EmbedJob], exc: Exception, events: list) -> None:
        for job in dict.fromkeys(jobs):
            self.jobs.remove(job)
            events.append((job.out, JobFailed(exc)))
            self.queue.finish(job, events)

    def _decode(self, inputs: list[list[int]]) -> list[np.ndarray]:
        """Pooled rows (normalised vectors, or raw scores) of `inputs`, one decode."""
        ctx = self._ensure_context()
        batch = self._batch
        batch.clear()
        for seq, tokens in enumerate(inputs):
            batch.add(tokens, 0, seq, True)
        batch.logits[:batch.n] = 1  # pooling reads every token's output
        rc = batch.decode(ctx)
        memory = llama_cpp.llama_get_memory(ctx)
        try:
            if rc != 0:
                raise ServiceUnavailable(f"llama_decode failed ({rc}) for the embeddings of "
                                         f"{self.model_id}")
            return [self._row(ctx, seq) for seq in range(len(inputs))]
        finally:
            if memory:
                llama_cpp.llama_memory_clear(memory, True)

    def _row(self, ctx, seq: int) -> np.ndarray:
        ptr = llama_cpp.llama_get_embeddings_seq(ctx, seq)
        if not ptr:
            raise ServiceUnavailable(f"llama.cpp gave no pooled output for {self.model_id}")
        row = np.ctypeslib.as_array(ptr, shape=(self.info.dimensions,)).astype(np.float64)
        if not self.info.reranks:
            norm = np.sqrt(np.sum(row * row))
            row = row / norm if norm > 0 else row
        return row.astype(np.float32)

    def _ensure_context(self):
        if self._context is None:
            n_threads, n_threads_batch, flash_attn = self._settings
            cparams = llama_cpp.llama_context_default_params()
            n = self.info.max_tokens
            cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = n
            cparams.n_seq_max = MAX_SEQS
            cparams.kv_unified = True  # the sequences share one pool of n cells
            cparams.embeddings = True
            cparams.pooling_type = {v: k for k, v in POOLING_NAMES.items()}[self.info.pooling]
            cparams.n_threads, cparams.n_threads_batch = n_threads, n_threads_batch
            cparams.flash_attn_type = self._flash_attn(flash_attn)
            try:
                self._context = internals.LlamaContext(model=self.model.llama, params=cparams,
                                                       verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise ServiceUnavailable(f"could not make an embedding context for "
                                         f"{self.model_id}: {exc}") from exc
            self._batch = Batch(n)
            log.info("%s: embedding context made (%s pooling, %d tokens, %d sequences a decode)",
                     self.model_id, self.info.pooling, n, MAX_SEQS)
        return self._context.ctx

    def _flash_attn(self, chat_setting: int) -> int:
        """Off while the attention scores of a full batch stay small: llama.cpp's CPU flash
        attention computes a batch of 64 rows or more by other (half-precision) kernels than a
        short one, so an input's vector would depend on what shares its batch; plain attention
        keeps it to a last bit. Past that size, the chat context's setting (scores of a long
        batch would cost too much memory)."""
        arch = self.model.metadata.get("general.architecture", "")
        try:
            heads = int(self.model.metadata.get(f"{arch}.attention.head_count", 32))
        except (TypeError, ValueError):
            heads = 32
        if self.info.max_tokens ** 2 * heads * 4 <= PLAIN_ATTENTION_BYTES:
            return llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        return chat_setting

    def close(self) -> None:
        """Free the context (after the loop has stopped: its jobs had their end then)."""
        self.jobs.clear()
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        if self._context is not None:
            self._context.close()
            self._context = None
