"""Per-task decoding: one choice of a request, turning its slot's logits into text.

A `Task` holds its sampler chain (engine.sampling: grammar, penalties, seed), an incremental
UTF-8 decoder (a character split over tokens comes out whole), its stop matcher (engine.stops:
text that could start a stop string is held back) and its token budget. `next_token` runs on
the loop thread right after the decode that wrote the task's logits row (`verify`: the rows of
a speculative draft, in order; engine.spec); `tail` gives what was held back when the choice
ends. With logprobs, `logprob` reads the row's log-softmax.
"""

from __future__ import annotations

import codecs
import ctypes
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import llama_cpp
import numpy as np

from localgw.engine.sampling import Sampler
from localgw.engine.stops import StopMatcher
from localgw.engine.types import TokenLogprob, TokenText, TopLogprob

if TYPE_CHECKING:
    from localgw.engine.jobs import Job
    from localgw.engine.model import Model
    from localgw.engine.slots import Slot

# a second handle on llama_get_logits_ith that returns the row's address as a plain int (the
# first one's float pointer would need a ctypes.cast per token)
_logits_address = type(llama_cpp.llama_cpp._lib.llama_get_logits_ith)(
    ("llama_get_logits_ith", llama_cpp.llama_cpp._lib))
_logits_address.argtypes = [ctypes.c_void_p, ctypes.c_int32]
_logits_address.restype = ctypes.c_void_p
_utf8 = codecs.getincrementaldecoder("utf-8")


class LogitRows:
    """The logits of a batch row, as a numpy view. Views are kept by address (the output buffer
    moves only when llama.cpp grows it): making one with `np.ctypeslib.as_array` every token
    would be a large part of a step's Python."""

    def __init__(self, ctx, n_vocab: int):
        self._ctx = ctx
        self._n_vocab = n_vocab
        self._rows: dict[int, np.ndarray] = {}

    def __call__(self, index: int) -> np.ndarray:
        address = _logits_address(self._ctx, index)
        row = self._rows.get(address)
        if row is None:
            if len(self._rows) >= 1024:
                self._rows.clear()
            ptr = ctypes.cast(address, ctypes.POINTER(ctypes.c_float))
            row = self._rows[address] = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
        return row


@dataclass(eq=False)
class Task:
    """One choice of a job, running in a slot."""

    job: Job
    index: int
    slot: Slot
    sampler: Sampler
    budget: int
    stops: StopMatcher
    state: str = "prefill"             # prefill → generate
    pending: int = -1                  # sampled token to feed on the next step
    out_index: int = -1                # its logits row in the current batch
    generated: int = 0
    decoder: object = field(default_factory=lambda: _utf8("replace"))

    def next_token(self, ctx, model: Model, rows: LogitRows, events: list) -> str | None:
        """Sample the next token from this task's row and add its text to `events`. Returns
        why the choice ends ("stop", "length"), or None: the token is pending for the next step."""
        job = self.job
        params = job.params
        row = None
        if params.logprobs or self.sampler.needs_row:
            row = rows(self.out_index)
        logits = row.copy() if params.logprobs else None
        token = self.sampler.sample(ctx, self.out_index, row)
        if model.is_eog(token):
            return "stop"
        self.generated += 1
        text = self.stops.feed(self.decoder.decode(model.piece(token, token in job.preserve)))
        lp = None if logits is None else logprob(token, logits, params.top_logprobs, model.piece)
        events.append((job.out, TokenText(self.index, text, lp)))
        if self.stops.stopped:
            return "stop"
        if self.generated >= self.budget:
            return "length"
        self.pending = token
        return None

    def verify(self, draft: list[int], ctx, model: Model, rows: LogitRows,
               events: list) -> tuple[int, str | None]:
        """After a decode of `[pending] + draft` from row `out_index` on: sample the rows in
        order, as many as the sampled tokens agree with the draft (engine.spec). The slot's
        `tokens` gain the pending token and the draft tokens kept. Returns how many were kept,
        and why the choice ends (None: it goes on, its next token pending)."""
        tokens = self.slot.tokens
        tokens.append(self.pending)
        finish = self.next_token(ctx, model, rows, events)
        kept = 0
        for token in draft:
            if finish is not None or self.pending != token:
                break
            tokens.append(token)
            kept += 1
            self.out_index += 1
            finish = self.next_token(ctx, model, rows, events)
        return kept, finish

    def tail(self) -> str:
        """The text held back when the choice ends: a partial character, a stop string's start."""
        if self.stops.stopped:
            return ""
        tail = self.stops.feed(self.decoder.decode(b"", final=True))
        return tail + ("" if self.stops.stopped else self.stops.flush())


def logprob(token: int, logits: np.ndarray, top_n: int,
            piece: Callable[[int], bytes]) -> TokenLogprob:
    """`token`'s log-probability in a row of logits, with the `top_n` most likely tokens'."""
    shifted = logits - logits.max()
    lse = float(np.log(np.exp(shifted).sum()))
    top: list[TopLogprob] = []
    if top_n:
        ids = np.argpartition(-shifted, top_n)[:top_n]
        for t in ids[np.argsort(-shifted[ids])]:
            raw = piece(int(t))
            top.append(TopLogprob(raw.decode("utf-8", "replace"), float(shifted[t]) - lse,
                                  list(raw)))
    raw = piece(token)
    return TokenLogprob(raw.decode("utf-8", "replace"), float(shifted[token]) - lse,
                        list(raw), top)
