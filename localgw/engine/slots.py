"""The slot table: which KV sequence serves which task, and moving prompt prefixes between them.

A `Slot` is one sequence of the context (its own KV stream, or its share of one pool) with the
tokens whose cells it holds, kept after its task ends for the next request with the same
prefix. `Slots.place` chooses the slot for a new choice and fills it with the most of its
prompt that is worth having:
- its own cached prefix (free); the slot chosen is the idle one whose cache covers most of the
  prompt, if that is at least half of it (llama.cpp's server's similarity rule), else an empty
  one, else the least recently used (whose conversation is first saved to the prompt cache);
- or a longer prefix from another slot, busy or idle (a *donor*): by `llama_memory_seq_cp` (a
  whole-stream copy, run at the start of the next decode) or by `llama_state_seq_get_data` /
  `set_data` through a host buffer (its own cells only);
- or from an entry of the host-RAM prompt cache (engine.prompt_cache), by `set_data`;
whichever engine.reuse finds saves the most prefill time net of its copy. The last two prompt
tokens are never taken (see engine.loop.prompt_piece).

Pending stream copies pin both ends until that decode (`copy_to`, `copy_from`): a destination is
no donor, and neither end is given a new task. Everything here runs on the loop thread; other
threads only read `describe` and `any_busy` (lengths and flags, no iteration of shared state).
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import llama_cpp
import numpy as np

from localgw.engine.prompt_cache import CacheEntry, PromptCache, as_tokens, common_prefix
from localgw.engine.reuse import Rates, Source, choose as choose_source

if TYPE_CHECKING:
    from localgw.engine.decoding import Task

MIN_SAVE_TOKENS = 32                # a slot holding fewer tokens is not worth saving
SLOT_SIMILARITY = 0.5               # share of a prompt a slot must hold to be chosen for it
MAX_SCRATCH = 64 << 20              # bytes of the donor copy buffer kept between copies


@dataclass(eq=False)
class Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds
    task: Task | None = None
    last_used: float = 0.0


def choose_slot(idle: list[Slot], own: dict, prompt_len: int) -> Slot:
    """The idle slot whose cache covers most of this prompt, if that is at least half of it;
    else an empty slot; else the least recently used one."""
    similar = [s for s in idle if own[id(s)] >= SLOT_SIMILARITY * prompt_len]
    if similar:
        return max(similar, key=lambda s: (own[id(s)], -s.last_used))
    empty = [s for s in idle if not s.tokens]
    return empty[0] if empty else min(idle, key=lambda s: s.last_used)


class Slots:
    def __init__(self, ctx, memory, n_parallel: int, n_ctx: int, kv_unified: bool,
                 cache: PromptCache, rates: Rates):
        self._ctx = ctx          # the llama_context pointer
        self._mem = memory
        self.n_ctx = n_ctx
        self.kv_unified = kv_unified
        self.cache = cache
        self.rates = rates
        self.slots = [Slot(seq) for seq in range(n_parallel)]
        self.copy_to: set[int] = set()
        self.copy_from: set[int] = set()
        self._scratch = bytearray()  # a donor's cells on their way to another slot (see reuse)

    def describe(self) -> list[dict]:
        return [{"id": s.seq, "busy": s.task is not None, "cached_tokens": len(s.tokens)}
                for s in self.slots]

    @property
    def any_busy(self) -> bool:
        return any(s.task is not None for s in self.slots)

    def free(self) -> list[Slot]:
        """Slots without a task and outside pending stream copies."""
        return [s for s in self.slots if s.task is None and s.seq not in self.copy_to
                and s.seq not in self.copy_from]

    def copies_done(self) -> None:
        """A decode ran: the pending stream copies ran at its start."""
        self.copy_to.clear()
        self.copy_from.clear()

    # ---- placing a prompt ----------------------------------------------------------------------
    def place(self, prompt: np.ndarray, idle: list[Slot]) -> tuple[Slot, int]:
        """The slot for a new choice of `prompt`, from `idle`, holding as much of the prompt's KV
        as is worth having; and how many of the prompt's tokens it holds."""
        limit = max(len(prompt) - 2, 0)  # the last two are always evaluated (prompt_piece)
        own = {id(s): min(common_prefix(as_tokens(s.tokens), prompt), limit) for s in self.slots}
        slot = choose_slot(idle, own, len(prompt))
        reuse = own[id(slot)]
        donor = max((s for s in self.slots if s is not slot and s.seq not in self.copy_to),
                    key=lambda s: own[id(s)], default=None)
        entry, from_cache = self.cache.best(prompt) if self.cache.enabled else (None, 0)
        from_cache = min(from_cache, limit)
        self.save(slot, keep=reuse)
        source = choose_source(reuse, self._sources(reuse, donor, own, entry, from_cache),
                               self.rates.prefill_s_per_token)
        if source is None:
            if self.cache.enabled and limit >= MIN_SAVE_TOKENS:
                self.cache.stats.misses += 1
        elif source.kind == "stream":
            # across KV streams llama.cpp copies a whole stream (on the next decode); then trim
            llama_cpp.llama_memory_seq_cp(self._mem, donor.seq, slot.seq, -1, -1)
            self.copy_from.add(donor.seq)
            self.copy_to.add(slot.seq)
            reuse = source.tokens
        else:
            reuse = self._copy_state(slot, source, donor, entry)
        self.seq_rm(slot.seq, reuse)
        slot.tokens = slot.tokens[:reuse] if source is None else list(prompt[:reuse])
        return slot, reuse

    def _copy_state(self, slot: Slot, source: Source, donor: Slot | None,
                    entry: CacheEntry | None) -> int:
        """Set a slot's cells from a donor's state or a cache entry; the tokens it then holds."""
        if source.kind == "state":
            data = self._state_of(donor.seq, source.bytes_moved // 2)  # out, then in
        else:
            data = (ctypes.c_uint8 * len(entry.data)).from_buffer(entry.data)  # no copy
        reuse = source.tokens if data is not None and self._set_state(slot.seq, data) else 0
        if source.kind == "cache" and reuse:
            self.cache.stats.hits += 1
            self.cache.touch(entry)
        return reuse

    def _sources(self, reuse: int, donor: Slot | None, own: dict, entry,
                 from_cache: int) -> list[Source]:
        """Where more of the prompt than the slot's own `reuse` tokens could come from, each
        with what moving it costs."""
        sources = []
        if donor is not None and own[id(donor)] > reuse:
            tokens = own[id(donor)]
            if self.kv_unified:  # one pool: the copy only marks the donor's cells as shared
                sources.append(Source("stream", tokens, 0, 1.0))
            else:
                size = llama_cpp.llama_state_seq_get_size(self._ctx, donor.seq)
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
        written = llama_cpp.llama_state_seq_get_data(self._ctx, data, size, seq)
        self.rates.copied(written, time.perf_counter() - started)
        return (ctypes.c_uint8 * written).from_buffer(buf) if written else None

    def _set_state(self, seq: int, data) -> bool:
        """Replace sequence `seq`'s cells with a state from `llama_state_seq_get_data`."""
        self.seq_rm(seq, 0)
        started = time.perf_counter()
        ok = bool(llama_cpp.llama_state_seq_set_data(self._ctx, data, len(data), seq))
        self.rates.copied(len(data), time.perf_counter() - started)
        return ok

    # ---- giving cells back ---------------------------------------------------------------------
    def save(self, slot: Slot, keep: int) -> None:
        """Before a slot is cut back to `keep` tokens for another conversation, keep its
        sequence in the prompt cache (unless it holds little, or the cache has it already)."""
        if not self.cache.enabled or len(slot.tokens) - keep < MIN_SAVE_TOKENS:
            return
        tokens = as_tokens(slot.tokens)
        if self.cache.covers(tokens):
            return
        size = llama_cpp.llama_state_seq_get_size(self._ctx, slot.seq)
        if not size or size > self.cache.capacity:
            return
        buf = (ctypes.c_uint8 * size)()
        started = time.perf_counter()
        written = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, slot.seq)
        self.rates.copied(written, time.perf_counter() - started)
        if written:  # kept in the buffer llama.cpp wrote: a state is megabytes, not copied twice
            self.cache.put(tokens, memoryview(buf)[:written])

    def give_back_idle(self) -> bool:
        """Empty every idle slot that holds cells, saving each to the prompt cache first (a
        full shared pool); False when there was none."""
        idle = [s for s in self.slots if s.task is None and s.tokens]
        for s in idle:
            self.save(s, keep=0)
            self.seq_rm(s.seq, 0)
            s.tokens = []
        return bool(idle)

    def seq_rm(self, seq: int, start: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._mem, seq, start, -1)
