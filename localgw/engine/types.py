"""What crosses the engine boundary: requests in, events out, and the interface of a loaded model
(`Runner`). Plain dataclasses and a protocol, no llama_cpp."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from localgw import defaults

if TYPE_CHECKING:
    from localgw.engine.generation import Generation
    from localgw.engine.prompt_cache import PromptCache


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repeat_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    grammar: str | None = None  # GBNF, enforced while sampling


@dataclass
class LoadOptions:
    n_ctx: int | None = None          # planned by engine.fit; None: the trained context
    n_threads: int | None = None      # decode threads; None: chosen by engine.threads
    n_threads_batch: int | None = None
    n_gpu_layers: int | None = None   # None: all when offload is supported, else 0
    n_batch: int = 2048               # tokens per llama_decode call (prompt chunks)
    n_ubatch: int = 512               # tokens per compute pass inside one call
    n_parallel: int | None = None     # slots (sequences decoded together); None: planned
    cache_ram: int | None = None      # bytes of host-RAM prompt cache; None: planned; 0: off
    kv_unified: bool = False          # True: the slots' cells in one shared pool (runner docstring)
    flash_attn: bool | None = None    # None: llama.cpp decides per device (auto)
    max_queue: int = defaults.MAX_QUEUE  # waiting requests before 429 queue_full
    spec: str = defaults.SPEC         # speculative decoding: auto | off | ngram | draft (engine.spec)
    spec_max: int = defaults.SPEC_MAX  # most tokens a task drafts in one step
    draft_path: str | None = None     # the draft model's GGUF (the manager resolves an id to it)


@dataclass
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int]


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]
    top: list[TopLogprob]


@dataclass
class PromptDone:
    """The prompt is in the KV cache; `cached_tokens` of it were reused from the last request."""

    prompt_tokens: int
    cached_tokens: int


@dataclass
class TokenText:
    index: int                 # choice index
    text: str                  # may be "" (held back for a stop string or a partial UTF-8 char)
    logprob: TokenLogprob | None = None


@dataclass
class ChoiceDone:
    index: int
    finish_reason: str         # "stop" or "length"
    completion_tokens: int
    stop_sequence: str | None = None  # the stop string that ended it, if one did


@dataclass
class JobFailed:
    error: Exception


Event = PromptDone | TokenText | ChoiceDone | JobFailed


# GGUF architectures llama.cpp runs as encoders (no causal decoder): embeddings and reranking only
ENCODER_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "neo-bert",
                                   "jina-bert-v2", "jina-bert-v3", "modern-bert", "t5encoder"})


@dataclass(frozen=True)
class EmbeddingInfo:
    """What a model embeds (engine.embed): its pooling (`mean`, `cls`, `last`, `rank`), the length
    of one pooled row (a vector, or a reranker's scores), the longest input in tokens, whether
    it has a decoder (chat works) and whether it is a reranker."""

    pooling: str
    dimensions: int
    max_tokens: int
    generates: bool
    reranks: bool


@dataclass
class Embedded:
    """An embedding job's result: one row per input, in order (L2-normalised vectors, or a
    reranker's raw scores), and the tokens they took."""

    rows: Any  # numpy float32 array, inputs x dimensions
    prompt_tokens: int


class Runner(Protocol):
    """A loaded model, as the manager, the server's limits, metrics and routes use it
    (engine.runner.LlamaRunner; test fakes declare the parts they exercise)."""

    model_id: str
    n_ctx: int                    # tokens one request may use
    n_vocab: int
    n_parallel: int               # slots
    n_gpu_layers: int
    kv_unified: bool
    cache: PromptCache            # the host-RAM prompt cache (read for /health and /metrics)

    @property
    def broken(self) -> Exception | None: ...  # why its decode loop stopped; None while it works
    @property
    def busy(self) -> bool: ...
    @property
    def queued(self) -> int: ...
    @property
    def prompt_tokens_evaluated(self) -> int: ...
    @property
    def speculative(self) -> dict: ...  # {mode, drafted, accepted, ...} for /health and /metrics
    @property
    def memory_bytes(self) -> int: ...
    @property
    def metadata(self) -> dict[str, str]: ...
    @property
    def bos_text(self) -> str: ...
    @property
    def eos_text(self) -> str: ...

    def token_text(self, token_id: int) -> str: ...
    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]: ...
    def prompt_tokens(self, prompt: str) -> list[int]: ...
    def check_prompt(self, tokens: list[int]) -> None: ...
    def check_grammar(self, gbnf: str) -> None: ...
    def describe_slots(self) -> list[dict]: ...
    def submit(self, tokens: list[int], params: SamplingParams, n: int = 1,
               preserve: tuple[str, ...] = ()) -> Generation: ...
    def abort_all(self, error: Exception) -> None: ...
    # embeddings and reranking (engine.embed)
    embedding: EmbeddingInfo
    def embedding_tokens(self, text: str) -> list[int]: ...
    def rerank_tokens(self, query: str, document: str) -> list[int]: ...
    def embed(self, inputs: list[list[int]]) -> Generation: ...
    def close(self) -> None: ...
