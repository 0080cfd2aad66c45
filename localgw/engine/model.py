"""The model and its vocabulary: loading, tokenizing, token texts, grammar checks.

`Model` loads the weights and creates the context with them (the context's size is the slots'
KV: `n_seq_max` streams of one request's `n_ctx` cells, or one pool of as many; see
engine.runner). Once loaded, the context belongs to the loop thread (engine.loop): nothing here
touches it again until `close`, after the loop has stopped.

What other threads use is the vocabulary. `tokenize`, `token_text`, `prompt_tokens` and the
BOS/EOS facts only read llama.cpp's vocabulary; `check_grammar` remembers the grammars that
compiled under a lock (preparation threads call it side by side). `piece` (token → bytes,
cached without a lock) is the loop thread's.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
import time
from collections import OrderedDict

import llama_cpp
from llama_cpp import _internals as internals

from localgw.engine.llamalog import capture_buffers
from localgw.engine.types import LoadOptions
from localgw.errors import InvalidRequest, ModelLoadError

GOOD_GRAMMARS = 256  # compiled grammars remembered (by digest) per model
FLASH_ATTN_NAMES = {llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO: "auto",
                    llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED: "off",
                    llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED: "on"}
_backend_ready = False


def gpu_offload_supported() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


def system_info() -> str:
    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()


def flash_attn_type(options: LoadOptions) -> int:
    """llama.cpp decides per device unless the options say (on a CPU it turns it on; the trade on
    CPUs is in the README's Threads section)."""
    if options.flash_attn is not None:
        return (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if options.flash_attn
                else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    return llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO


class Model:
    """One loaded model, its vocabulary, and the context created with it."""

    def __init__(self, model_id: str, path: str, options: LoadOptions, *, n_parallel: int,
                 n_gpu_layers: int, n_threads: int, n_threads_batch: int):
        global _backend_ready
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True
        started = time.monotonic()
        try:
            with capture_buffers() as buffers:
                mparams = llama_cpp.llama_model_default_params()
                mparams.n_gpu_layers = n_gpu_layers
                # verbose=True: else llama-cpp-python points the process's fds 1 and 2 at
                # /dev/null while loading, hiding what llama.cpp prints before an abort or a
                # crash; its log comes through engine.llamalog either way
                self.llama = internals.LlamaModel(path_model=path, params=mparams, verbose=True)
                per_slot = options.n_ctx or self.llama.n_ctx_train()
                cparams = self._context_params(options, per_slot, n_parallel, n_threads,
                                               n_threads_batch)
                self.context = internals.LlamaContext(model=self.llama, params=cparams,
                                                      verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"could not load {model_id} from {path}: {exc}") from exc
        self.buffers = dict(buffers)  # what llama.cpp reports it allocated, by kind and device
        self.load_seconds = time.monotonic() - started
        self.n_ctx = llama_cpp.llama_n_ctx_seq(self.context.ctx)  # what one request may use
        if options.kv_unified:  # the pool holds every slot's cells; one request gets its share
            self.n_ctx = min(self.n_ctx, per_slot)
        self.n_ubatch = cparams.n_ubatch
        self.flash_attn = cparams.flash_attn_type
        self.n_vocab = self.llama.n_vocab()
        self.n_layer = llama_cpp.llama_model_n_layer(self.llama.model)
        self.vocab = self.llama.vocab
        self.memory = self.context.memory
        self.metadata: dict[str, str] = self.llama.metadata()
        self._lock = threading.Lock()
        self._good_grammars: OrderedDict[bytes, None] = OrderedDict()  # digests, LRU
        self._preserve_ids: dict[str, int | None] = {}
        self._pieces: dict[int, bytes] = {}

    @staticmethod
    def _context_params(options: LoadOptions, per_slot: int, n_parallel: int, n_threads: int,
                        n_threads_batch: int):
        cparams = llama_cpp.llama_context_default_params()
        # one KV stream per slot: a slot's attention never sees another's cells; or the same
        # cells in one pool (kv_unified, see engine.runner)
        cparams.n_ctx = per_slot * n_parallel
        cparams.n_batch = options.n_batch
        cparams.n_ubatch = min(options.n_ubatch, options.n_batch)
        cparams.n_seq_max = n_parallel
        cparams.kv_unified = bool(options.kv_unified)
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads_batch
        cparams.flash_attn_type = flash_attn_type(options)
        cparams.no_perf = False
        return cparams

    @property
    def memory_bytes(self) -> int:
        return sum(self.buffers.values())

    # ---- the vocabulary --------------------------------------------------------------------
    def token_text(self, token_id: int) -> str:
        return self.llama.token_get_text(token_id) if token_id >= 0 else ""

    @property
    def bos_text(self) -> str:
        return self.token_text(self.llama.token_bos())

    @property
    def eos_text(self) -> str:
        return self.token_text(self.llama.token_eos())

    @property
    def add_bos(self) -> bool:
        return self.llama.add_bos_token()

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos, special)

    def prompt_tokens(self, prompt: str) -> list[int]:
        """Tokens of a rendered prompt: special tokens parsed, BOS added once when the model wants it."""
        tokens = self.tokenize(prompt)
        bos = self.llama.token_bos()
        if self.add_bos and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def is_eog(self, token: int) -> bool:
        return llama_cpp.llama_vocab_is_eog(self.vocab, token)

    def preserved_ids(self, texts) -> frozenset:
        """The ids of the control tokens named by `texts` (each one token, or none)."""
        ids = set()
        for text in texts:
            if text not in self._preserve_ids:
                found = self.tokenize(text)
                self._preserve_ids[text] = found[0] if len(found) == 1 else None
            if self._preserve_ids[text] is not None:
                ids.add(self._preserve_ids[text])
        return frozenset(ids)

    def piece(self, token: int, special: bool = False) -> bytes:
        """A token's bytes (`special`: a control token's text too); the loop thread's."""
        key = -token - 1 if special else token
        piece = self._pieces.get(key)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
            if n > 64:  # rare very long piece
                buf = ctypes.create_string_buffer(n)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, n, 0, special)
            piece = self._pieces[key] = buf.raw[:max(n, 0)]
        return piece

    def check_grammar(self, gbnf: str) -> None:
        """Parse a grammar once with this model's vocabulary; a bad one is a 400, not a crash.
        The last GOOD_GRAMMARS that compiled are remembered by digest."""
        text = gbnf.encode("utf-8")
        digest = hashlib.blake2b(text, digest_size=16).digest()
        with self._lock:  # preparation threads call this side by side
            if digest in self._good_grammars:
                self._good_grammars.move_to_end(digest)
                return
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, text, b"root")
        if not sampler:
            raise InvalidRequest("the grammar built for this request does not compile in "
                                 "llama.cpp; simplify the schema", param="response_format")
        llama_cpp.llama_sampler_free(sampler)
        with self._lock:
            self._good_grammars[digest] = None
            if len(self._good_grammars) > GOOD_GRAMMARS:
                self._good_grammars.popitem(last=False)

    def close(self) -> None:
        """Free the context, then the weights (after the loop thread has stopped)."""
        self.context.close()
        self.llama.close()
