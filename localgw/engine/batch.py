"""One `llama_batch`, refilled every step: tokens of many sequences, written through numpy views
(a 2,048-token prompt chunk costs a few vectorised copies, not 10,000 ctypes assignments)."""

from __future__ import annotations

import llama_cpp
import numpy as np


class Batch:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._batch = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.token = np.ctypeslib.as_array(self._batch.token, shape=(capacity,))
        self.pos = np.ctypeslib.as_array(self._batch.pos, shape=(capacity,))
        self.n_seq_id = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(capacity,))
        self.logits = np.ctypeslib.as_array(self._batch.logits, shape=(capacity,))
        # seq_id is an array of pointers to one llama_seq_id each (n_seq_max = 1 per token)
        self._seq_ptrs = [self._batch.seq_id[i] for i in range(capacity)]
        self.n_seq_id[:] = 1
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    @property
    def room(self) -> int:
        return self.capacity - self.n

    def add(self, tokens, start_pos: int, seq: int, want_logits: bool,
            every_row: bool = False) -> int:
        """Append tokens of one sequence at consecutive positions; returns the index of the last
        (where its logits are, when asked for). `every_row`: logits on each of them (a draft
        being verified; the first token's row is then at the returned index minus k - 1)."""
        k = len(tokens)
        i = self.n
        if k == 1:  # a stream's next token: item writes cost a tenth of the slice writes below
            self.token[i] = tokens[0]
            self.pos[i] = start_pos
            self.logits[i] = want_logits
            self._seq_ptrs[i][0] = seq
            self.n = i + 1
            return i
        self.token[i:i + k] = tokens
        self.pos[i:i + k] = np.arange(start_pos, start_pos + k, dtype=self.pos.dtype)
        self.logits[i:i + k] = every_row
        if want_logits:
            self.logits[i + k - 1] = 1
        for j in range(i, i + k):
            self._seq_ptrs[j][0] = seq
        self.n += k
        return i + k - 1

    def decode(self, ctx) -> int:
        self._batch.n_tokens = self.n
        return llama_cpp.llama_decode(ctx, self._batch)

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
