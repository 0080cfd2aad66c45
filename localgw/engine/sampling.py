"""A request's sampler: llama.cpp's sampler chain, with two shortcuts taken in numpy.

`llama_sampler_sample` copies every logit of a row into a candidate array before the chain
runs, a cost that grows with the vocabulary. Two common chains pay much more than their result
needs, so they start in numpy and stay in llama.cpp after that:

- greedy (temperature 0, no logit bias): the first largest logit of the row, which is what
  llama.cpp's greedy sampler picks, found without the copy.
- top_p with top_k off (the recommended settings of SmolLM2, Llama 3, DeepSeek R1, which
  localgw applies when a request sends no top_k): llama.cpp's top_p sorts the whole vocabulary
  whenever the nucleus is larger than 256 tokens, with buckets over logits -10..10 that raw
  logits overflow: several times what llama.cpp's own defaults (top_k 40 first) cost, and more
  for a larger vocabulary (figures in docs/benchmarks.md). Here numpy finds the nucleus, the
  most likely tokens whose probabilities first add up to `top_p`, in llama.cpp's order (logit
  descending, with probabilities over the whole vocabulary), and the rest of the chain (min_p,
  temperature, dist with the request's seed) runs in llama.cpp on that sorted set, as it would
  after llama.cpp's top_p. llama.cpp sums the probabilities in float32 in token order, numpy pairwise: the sums
  differ by about 1e-4 of their value, so where the running sum lands that close to `top_p` the
  cut can move by a token (tests/integration/test_nucleus.py measures it on real logits). Then
  the seed draws another text than llama.cpp's own chain would; from run to run of localgw it
  draws the same.

Repetition penalties (frequency, presence, repeat; localgw's default repeat penalty among
them) are applied the same way in numpy when a shortcut runs: llama.cpp's penalties sampler
rule (a logit above zero divided by the repeat penalty, one below multiplied; then the
frequency and presence terms) on a copy of the row, for the tokens sampled within the last
PENALTY_LAST_N, before the shortcut reads it. Logit bias comes before top_p in the chain, so
it keeps the whole chain (penalties included) in llama.cpp.

A grammar is not in the chain: checking all of a vocabulary against it costs more than the
decode step (every token's text run through the grammar's stacks). As in llama.cpp's own
`common_sampler_sample`, the chain picks a token from the whole row first and the grammar
checks that one token; only when it refuses is the row filtered by the grammar (refused
tokens at -inf) and the choice made again on what is left. A greedy choice is the same either
way; with truncation (top_k, top_p, min_p) an accepted first pick comes from the truncated
unconstrained distribution, as in llama.cpp's server. Either way the chosen token is accepted
into the grammar, and a grammar that allows no token at all fails the request, never the
process (llama.cpp would throw from `accept`).
"""

from __future__ import annotations

import ctypes
from collections import deque

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from localgw.engine.types import SamplingParams
from localgw.errors import InvalidRequest

PENALTY_LAST_N = 64
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data
assert TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)
_WIDEN = (4.0, 8.0, 16.0, 32.0)  # logit distances below the maximum tried before all of them


def nucleus(row: np.ndarray, p: float, scratch: np.ndarray | None = None) -> np.ndarray:
    """The candidates llama.cpp's top_p (min_keep 1) keeps of one row of logits, as
    llama_token_data records sorted by logit, descending, with their probabilities over the
    whole row. `scratch`: a float32 array of the row's size to work in.

    Only the tokens within a widening distance of the largest logit are sorted: once their
    probabilities reach `p`, every token outside is less likely than all of them and cannot be
    in the nucleus."""
    top = row.max()
    e = np.subtract(row, top, out=scratch)
    np.exp(e, out=e)
    z = e.sum(dtype=np.float32)
    for width in _WIDEN + (None,):
        if width is None:
            ids = np.arange(row.size)
        else:
            ids = np.flatnonzero(row >= top - width)
            if e[ids].sum(dtype=np.float32) < p * z * 1.0001:
                continue  # not enough mass near the top (with room for rounding)
        ids = ids[np.argsort(-row[ids], kind="stable")]
        probs = e[ids] / z
        cum = np.cumsum(probs, dtype=np.float32)
        k = int(np.searchsorted(cum, np.float32(p), side="left")) + 1
        if k <= ids.size or width is None:
            k = min(k, ids.size)
            out = np.empty(k, TOKEN_DATA)
            out["id"], out["logit"], out["p"] = ids[:k], row[ids[:k]], probs[:k]
            return out
    raise AssertionError("unreachable: the last width takes every token")


class Penalties:
    """llama.cpp's penalties sampler over the last `last_n` sampled tokens, on a numpy row."""

    def __init__(self, last_n: int, repeat: float, frequency: float, presence: float,
                 n_vocab: int):
        self.window: deque[int] = deque(maxlen=last_n)
        self.counts: dict[int, int] = {}
        self.repeat = np.float32(repeat)
        self.frequency, self.presence = np.float32(frequency), np.float32(presence)
        self.out = np.empty(n_vocab, np.float32)

    def accept(self, token: int) -> None:
        if len(self.window) == self.window.maxlen:
            old = self.window[0]
            left = self.counts[old] - 1
            if left:
                self.counts[old] = left
            else:
                del self.counts[old]
        self.window.append(token)
        self.counts[token] = self.counts.get(token, 0) + 1

    def apply(self, row: np.ndarray) -> np.ndarray:
        """The row with the penalties applied (a copy; `row` itself is left as it is)."""
        if not self.counts:
            return row
        out = self.out
        np.copyto(out, row)
        ids = np.fromiter(self.counts.keys(), np.int64, len(self.counts))
        seen = np.fromiter(self.counts.values(), np.float32, len(self.counts))
        logits = out[ids]
        logits = np.where(logits <= 0, logits * self.repeat, logits / self.repeat)
        out[ids] = logits - (seen * self.frequency + self.presence)
        return out


class Sampler:
    """One request's sampler. `sample` picks the next token from row `index` of the context's
    last batch; `row` is that row of logits as a numpy view (when `needs_row`)."""

    def __init__(self, params: SamplingParams, seed: int, model, n_vocab: int):
        self.chain = chain = internals.LlamaSampler()
        self.grammar = None  # a llama_sampler of its own, checked after the chain (docstring)
        self.shortcut: str | None = None
        self.penalties: Penalties | None = None
        self.top_p = params.top_p
        self.n_vocab = n_vocab
        self._cands: np.ndarray | None = None  # every token, for the chain or the grammar
        if not params.logit_bias and (params.temperature <= 0.0
                                      or (params.top_p < 1.0 and params.top_k <= 0)):
            self.shortcut = "greedy" if params.temperature <= 0.0 else "nucleus"
        penalized = (params.repeat_penalty != 1.0 or params.frequency_penalty
                     or params.presence_penalty)
        if params.logit_bias:
            chain.add_logit_bias(n_vocab, params.logit_bias)
        if penalized and self.shortcut:
            self.penalties = Penalties(PENALTY_LAST_N, params.repeat_penalty,
                                       params.frequency_penalty, params.presence_penalty, n_vocab)
        elif penalized:
            chain.add_penalties(n_vocab, PENALTY_LAST_N, params.repeat_penalty,
                                params.frequency_penalty, params.presence_penalty)
        if params.grammar:
            self.grammar = llama_cpp.llama_sampler_init_grammar(
                model.vocab, params.grammar.encode("utf-8"), b"root")
            if not self.grammar:  # the runner checked it at submit: a cache of it, not this call
                chain.close()
                raise InvalidRequest("the grammar built for this request does not compile in "
                                     "llama.cpp", param="response_format")
            self._one = np.zeros(1, TOKEN_DATA)
        if params.temperature <= 0.0:
            chain.add_greedy()
            return
        if params.top_k > 0:
            chain.add_top_k(params.top_k)
        if params.top_p < 1.0:
            if self.shortcut == "nucleus":  # numpy keeps what top_p would; see the docstring
                self._scratch = np.empty(n_vocab, np.float32)
            else:
                chain.add_top_p(params.top_p, 1)
        if params.min_p > 0.0:
            chain.add_min_p(params.min_p, 1)
        chain.add_temp(params.temperature)
        chain.add_dist(seed)

    @property
    def needs_row(self) -> bool:
        return self.shortcut is not None or self.grammar is not None

    def sample(self, ctx, index: int, row: np.ndarray | None) -> int:
        if self.shortcut is None and self.grammar is None:
            return llama_cpp.llama_sampler_sample(self.chain.sampler, ctx, index)
        if self.penalties is not None:
            row = self.penalties.apply(row)
        token = self._pick(row)
        if self.grammar is not None and not self._allowed(token):
            token = self._pick(self._grammar_row(row))
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        if self.grammar is not None:
            llama_cpp.llama_sampler_accept(self.grammar, token)
        if self.penalties is not None:
            self.penalties.accept(token)
        return token

    def _pick(self, row: np.ndarray) -> int:
        """The chain's choice from a row of logits (not yet accepted)."""
        if self.shortcut == "greedy":
            return int(row.argmax())
        if self.shortcut == "nucleus":
            cands = nucleus(row, self.top_p, self._scratch)
            sorted_ = True
        else:
            cands, sorted_ = self._every_token(row), False
        arr = llama_cpp.llama_token_data_array(
            cands.ctypes.data_as(llama_cpp.llama_token_data_p), cands.size, -1, sorted_)
        llama_cpp.llama_sampler_apply(self.chain.sampler, ctypes.byref(arr))
        return int(cands["id"][arr.selected])

    def _every_token(self, row: np.ndarray) -> np.ndarray:
        """Every token with its logit, in id order (the samplers reorder it in place)."""
        if self._cands is None:
            self._cands = np.empty(self.n_vocab, TOKEN_DATA)
        cands = self._cands
        cands["id"] = np.arange(self.n_vocab)
        cands["logit"] = row
        cands["p"] = 0.0
        return cands

    def _allowed(self, token: int) -> bool:
        one = self._one
        one["id"], one["logit"], one["p"] = token, 1.0, 0.0
        arr = llama_cpp.llama_token_data_array(
            one.ctypes.data_as(llama_cpp.llama_token_data_p), 1, -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        return bool(np.isfinite(one["logit"][0]))

    def _grammar_row(self, row: np.ndarray) -> np.ndarray:
        """`row` with every token the grammar refuses here at -inf."""
        cands = self._every_token(row)
        arr = llama_cpp.llama_token_data_array(
            cands.ctypes.data_as(llama_cpp.llama_token_data_p), cands.size, -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        logits = cands["logit"].copy()  # id order: the grammar only marks, it does not reorder
        if not np.isfinite(logits.max()):
            raise InvalidRequest("the output's grammar allows no token of this model's "
                                 "vocabulary here; simplify the schema")
        return logits

    def close(self) -> None:
        self.chain.close()
        if self.grammar is not None:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None
