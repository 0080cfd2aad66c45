"""LlamaRunner: the one owner of a llama.cpp context, serving many requests at once.

Rooms (each its own module; `LlamaRunner` composes them and is what callers see, as
engine.types.Runner declares):
- model and vocabulary (engine.model): loads the weights and the context, tokenizes, token
  texts, BOS/EOS, grammar checks, preserved control-token ids, token pieces;
- slots (engine.slots): the slot table, slot choice, KV moves between slots and from the
  prompt cache (decided by engine.reuse, kept by engine.prompt_cache), saving to the cache;
- the job queue (engine.jobs) and the loop (engine.loop): admission, one step, the batch,
  making room in a full pool;
- per-task decoding (engine.decoding): the sampler chain (engine.sampling), UTF-8 decoding,
  stops (engine.stops), logprobs;
- generation handles (engine.generation): the caller's `Generation` and event delivery.

Threads. Callers (the event loop, preparation threads) tokenize and check grammars (engine.model)
and `submit` jobs to a FIFO queue, bounded: 429 past `max_queue`. One thread, the loop, owns the
context: only it decodes, samples, moves KV cells and changes the slots and the prompt cache,
and it hands events back to each caller's event loop. `/health` and `/metrics` read counters and
the slots' lengths from any thread. `close` stops the loop before the context is freed.

Design:
- One context per model with `n_seq_max = parallel` sequences, each a *slot* with its own KV
  stream of `n_ctx` cells (llama.cpp's non-unified KV). Own streams keep a slot's attention
  on its own cells: concurrent requests never mix, and a prompt, read in a decode call of its
  own, is computed exactly as it would be alone, so at temperature 0 a stream starts exactly as
  it would alone. The tokens after that are decoded in one batch with the other streams, where
  a lone stream runs single-token kernels: streams usually match their solo text token for
  token, but a last bit can round differently and a long greedy output may drift from its solo
  run (GPU kernels add their own batch-size choices). One shared pool keeps none of this: see
  `kv_unified` below. A request (each choice of `n`) runs in a slot with its own sampler chain
  (grammar, penalties, seed), stop matcher, UTF-8 decoder and logprobs.
- One decode loop (continuous batching, engine.loop). Each step decodes the next token of every
  generating slot in one batch, hands their events to the event loop, then reads pending prompt
  pieces: a bounded number of tokens per step (one ubatch on the CPU, the whole batch on a GPU;
  128 while others stream), so a new 8k-token prompt does not freeze the streams already
  running. A prompt piece is decoded in a call of its own: with several KV streams llama.cpp
  splits a mixed batch into ubatches of equal tokens per sequence anyway, and a piece on its own
  is computed exactly as it would be alone. Sampling stays in llama.cpp's sampler chains
  (engine.sampling), but two chains start in numpy: greedy alone takes the first largest logit
  (the same token), and top_p with top_k off finds its nucleus (the same up to rounding) before
  llama.cpp's min_p, temperature and dist run on it.
- Slot choice by prefix (engine.slots): a new request takes the idle slot whose cached tokens
  share the longest prefix with its prompt. A longer prefix held by any other slot (busy or
  idle) or by an entry of the host-RAM prompt cache is copied in when that is cheaper than
  reading its extra tokens (engine.reuse weighs bytes moved against measured prefill time):
  another slot's cells by `llama_memory_seq_cp` (a whole-stream copy; a GPU's or a shared pool's
  choice) or by `llama_state_seq_get_data`/`set_data` through a host buffer (its own cells only:
  the CPU's choice unless it holds most of its stream), a cache entry by `set_data`. So the `n`
  choices of one request share their prompt (it is evaluated once), and a new conversation does
  not pay a whole-stream copy for the chat template's first few tokens. A slot taken over by
  another conversation is saved to the prompt cache first.
- Reproducible seeds: the piece that ends a prompt is decoded on its own with 2 to 63 tokens
  (the last two are re-read even when all of the prompt was cached) and the first token is
  sampled from its last row (engine.loop.prompt_piece). llama.cpp computes a lone token by other
  kernels than the rows of a batch (the logits of a prompt's last token often differ), and its
  CPU flash attention tiles 64 rows or more; rows of 2-63 come out the same bits however many
  share the call. So the first token's logits are the same cold, warm or restored from the
  prompt cache: same request + same seed = same text, first call or tenth. And a short cold
  prompt costs one decode call, not a prefill plus a one-token step.
- Speculative decoding (engine.spec, `--spec`, on by default as `auto`): drafts from look-ups
  in a slot's own context or from a draft model, verified in the step's one batch by the
  target's own sampler, row by row; the same request and seed give the same text with it on or
  off. `auto` prices a draft's rows by what rows cost on the model's device (engine.rowcost:
  timed at load when layers run on a GPU).
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
import logging
import random

from localgw.engine import embed, rowcost
from localgw.engine.generation import Generation
from localgw.engine.jobs import Job, JobQueue
from localgw.engine.loop import Loop
from localgw.engine.memory import release_freed_memory
from localgw.engine.model import FLASH_ATTN_NAMES, Model, gpu_offload_supported, system_info
from localgw.engine.prompt_cache import PromptCache
from localgw.engine.reuse import Rates
from localgw.engine.slots import Slots
from localgw.engine.spec import MODES as SPEC_MODES, NgramDrafter, Speculation
from localgw.engine.threads import default_threads
from localgw.engine.types import JobFailed, LoadOptions, SamplingParams
from localgw.errors import ContextLengthExceeded, InvalidRequest, ModelFailed, ModelLoadError

__all__ = ["LlamaRunner", "default_cache_ram", "gpu_offload_supported", "system_info"]

log = logging.getLogger("localgw.engine")


class LlamaRunner:
    """Owns one loaded model and its context; serves jobs in parallel slots from a bounded queue."""

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
        self.n_parallel = max(1, options.n_parallel or 4)
        self.n_batch = options.n_batch
        self.model = Model(model_id, path, options, n_parallel=self.n_parallel,
                           n_gpu_layers=self.n_gpu_layers, n_threads=self.n_threads,
                           n_threads_batch=self.n_threads_batch)
        self.buffers = self.model.buffers  # what llama.cpp reports it allocated, by kind and device
        self.load_seconds = self.model.load_seconds
        self.kv_unified = bool(options.kv_unified)
        self.n_ctx = self.model.n_ctx  # what one request may use
        self.n_vocab = self.model.n_vocab
        self.cache = PromptCache(options.cache_ram if options.cache_ram is not None
                                 else default_cache_ram())
        self.rates = Rates(on_gpu=self.n_gpu_layers != 0 and gpu_offload_supported())
        self.slots = Slots(self.model.context.ctx, self.model.memory, self.n_parallel, self.n_ctx,
                           self.kv_unified, self.cache, self.rates)
        self.jobs = JobQueue(model_id, self.max_queue)
        # prompt tokens per step when no slot streams: one ubatch on the CPU, where one takes
        # about a second (a client that leaves is noticed between steps); the whole batch on a GPU
        prefill_step = self.n_batch if self.n_gpu_layers != 0 else self.model.n_ubatch
        try:
            self.spec = self._speculation(options)
        except BaseException:
            self.model.close()
            raise
        self.loop = Loop(model_id, self.model, self.slots, self.jobs, n_batch=self.n_batch,
                         n_parallel=self.n_parallel, prefill_step=prefill_step, spec=self.spec)
        self.embedding = embed.embedding_info(self.model)  # embeddings run on the same loop
        self.loop.embeds = embed.EmbedWork(model_id, self.model, self.embedding, self.jobs,
                                           n_threads=self.n_threads,
                                           n_threads_batch=self.n_threads_batch,
                                           flash_attn=self.model.flash_attn)
        self.loop.start()
        log.info("loaded %s (ctx %d x %d slots%s, threads %d/%d, gpu layers %d, flash "
                 "attention %s) in %.2fs", model_id, self.n_ctx, self.n_parallel,
                 ", one shared KV pool" if self.kv_unified else "", self.n_threads,
                 self.n_threads_batch, self.n_gpu_layers, FLASH_ATTN_NAMES[self.model.flash_attn],
                 self.load_seconds)

    def _speculation(self, options: LoadOptions) -> Speculation | None:
        """The drafter `--spec` asks for (engine.spec): none with `off`; the draft model with
        `draft`, and with `auto` when one is given and fits this model; else look-ups."""
        if options.spec not in SPEC_MODES:
            raise ModelLoadError(f"--spec {options.spec}: use one of {', '.join(SPEC_MODES)}")
        if options.spec == "off":
            return None
        if options.spec == "draft" and not options.draft_path:
            raise ModelLoadError("--spec draft needs a draft model (--draft-model ID_OR_PATH)")
        cost = self._row_cost(options)
        if options.draft_path and options.spec in ("auto", "draft"):
            from localgw.engine.draft_model import DraftModel  # its own weights: only when asked
            try:
                drafter = DraftModel(options.draft_path, self.model, n_parallel=self.n_parallel,
                                     n_ctx=self.n_ctx, n_threads=self.n_threads,
                                     n_threads_batch=self.n_threads_batch,
                                     n_gpu_layers=self.n_gpu_layers)
                return Speculation(options.spec, drafter, options.spec_max, "draft", cost)
            except ModelLoadError as exc:
                if options.spec == "draft":
                    raise
                log.warning("%s: speculating with look-ups instead of the draft model: %s",
                            self.model_id, exc)
        return Speculation(options.spec, NgramDrafter(), options.spec_max, cost=cost)

    def _row_cost(self, options: LoadOptions) -> rowcost.RowCost:
        """What rows cost here, for auto's choices (engine.rowcost): timed at load when every
        layer runs on a GPU; else the CPU's line (layers left on the CPU make rows cost what
        they cost there, and timing a large model's batches on a CPU would add seconds to each
        load)."""
        on_gpu = self.rates.on_gpu and (self.n_gpu_layers < 0
                                        or self.n_gpu_layers >= self.model.n_layer)
        if options.spec != "auto" or not on_gpu:
            return rowcost.CPU_COST
        try:
            cost = rowcost.measure(self.model.context.ctx, self.model.memory, 0, self.n_vocab)
        except RuntimeError as exc:
            log.warning("%s: rows not timed (%s); speculating with the CPU's row cost",
                        self.model_id, exc)
            return rowcost.CPU_COST
        log.info("%s: a batch of n rows costs %.2f + %.2f n plain steps (timed at load)",
                 self.model_id, cost.base, cost.per_row)
        return cost

    # ---- facts the chat layer and the server need ----------------------------------------------
    @property
    def memory_bytes(self) -> int:
        drafter = self.spec.drafter if self.spec is not None else None
        return self.model.memory_bytes + getattr(drafter, "memory_bytes", 0)

    @property
    def metadata(self) -> dict[str, str]:
        return self.model.metadata

    def token_text(self, token_id: int) -> str:
        return self.model.token_text(token_id)

    @property
    def bos_text(self) -> str:
        return self.model.bos_text

    @property
    def eos_text(self) -> str:
        return self.model.eos_text

    @property
    def add_bos(self) -> bool:
        return self.model.add_bos

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]:
        return self.model.tokenize(text, add_bos=add_bos, special=special)

    def prompt_tokens(self, prompt: str) -> list[int]:
        """Tokens of a rendered prompt: special tokens parsed, BOS added once when the model wants it."""
        return self.model.prompt_tokens(prompt)

    def check_grammar(self, gbnf: str) -> None:
        """Parse a grammar once with this model's vocabulary; a bad one is a 400, not a crash."""
        self.model.check_grammar(gbnf)

    def check_prompt(self, tokens: list[int]) -> None:
        """A prompt must leave room for at least one generated token: else a 400, never a cut."""
        if len(tokens) >= self.n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, your "
                f"prompt is {len(tokens)} tokens, which leaves no room for a reply. Shorten the "
                f"prompt or start the server with a larger --ctx.", param="messages")

    # ---- state, for /health, /metrics and the manager ------------------------------------------
    @property
    def queued(self) -> int:
        return self.jobs.queued

    @property
    def busy(self) -> bool:
        return self.jobs.queued > 0 or self.slots.any_busy or self.loop.embeds.busy

    @property
    def broken(self) -> ModelFailed | None:
        """Why the decode loop stopped (no new work then); None while it works."""
        return self.jobs.broken

    @property
    def prompt_tokens_evaluated(self) -> int:
        """Prompt tokens decoded (not reused), for metrics and tests."""
        return self.loop.prompt_tokens_evaluated

    def describe_slots(self) -> list[dict]:
        return self.slots.describe()

    @property
    def speculative(self) -> dict:
        """Speculative decoding's mode and counts (engine.spec), for /health and /metrics."""
        if self.spec is None:
            return {"mode": "off", "drafter": None, "max": 0, "drafted": 0, "accepted": 0}
        return self.spec.describe()

    # ---- work ----------------------------------------------------------------------------------
    def submit(self, tokens: list[int], params: SamplingParams, n: int = 1,
               preserve: tuple[str, ...] = ()) -> Generation:
        """Queue a job; its events arrive on the calling event loop.

        `preserve` names control tokens (`[TOOL_CALLS]`, `<think>`…) whose text the output
        parsers need; other control tokens stay invisible.
        """
        if not self.embedding.generates:
            raise InvalidRequest(f"{self.model_id} is an embedding model (encoder only): it "
                                 "cannot generate text; use it with /v1/embeddings"
                                 + (" or /v1/rerank" if self.embedding.reranks else ""),
                                 param="model")
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="prompt")
        self.check_prompt(tokens)
        if params.grammar:
            self.check_grammar(params.grammar)
        bad = [t for t in params.logit_bias if not 0 <= t < self.n_vocab]
        if bad:
            raise InvalidRequest(f"logit_bias names token id {bad[0]}, outside this model's "
                                 f"vocabulary of {self.n_vocab}", param="logit_bias")
        self.jobs.reserve()
        out = Generation(asyncio.get_running_loop())
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        self.jobs.put(Job(list(tokens), params, n, out, self.model.preserved_ids(preserve),
                          seed=seed))
        return out

    def abort_all(self, error: Exception) -> None:
        """Fail every queued and running job with `error` (shutdown): their clients hear why."""
        for job in self.jobs.snapshot():
            job.out._send(JobFailed(error))
            job.out.cancel()

    # ---- embeddings and reranking (engine.embed) --------------------------------------------------
    def embedding_tokens(self, text: str) -> list[int]:
        return embed.embedding_tokens(self.model, text)

    def rerank_tokens(self, query: str, document: str) -> list[int]:
        return embed.rerank_tokens(self.model, query, document)

    def embed(self, inputs: list[list[int]]) -> Generation:
        """Queue the pooled rows of `inputs` (token lists, checked here); one `Embedded` event
        comes back on the calling event loop."""
        if not inputs:
            raise InvalidRequest("input is empty; send at least one item", param="input")
        embed.check_inputs(inputs, self.embedding, self.n_vocab)
        self.jobs.reserve()
        out = Generation(asyncio.get_running_loop())
        self.jobs.put(embed.EmbedJob([list(t) for t in inputs], out))
        return out

    def close(self) -> None:
        """Cancel queued and running work, stop the loop, free the context and the model."""
        jobs = self.jobs.close()
        if jobs is None:
            return
        for job in jobs:
            job.out.cancel()
        self.jobs.wake_to_stop()
        self.loop.join(timeout=30)
        self.cache.clear()
        self.loop.batch.close()
        self.loop.embeds.close()
        self.model.close()
        release_freed_memory()
        log.info("unloaded %s", self.model_id)


def default_cache_ram() -> int:
    """min(2 GiB, 10% of the machine's RAM)."""
    from localgw.engine.devices import system_memory

    total, _free = system_memory()
    return int(min(2 * 2 ** 30, total * 0.10))
