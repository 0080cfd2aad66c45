"""The host-RAM prompt cache: sequences that lost their slot, kept to be restored later.

When a slot is taken over by another conversation, the loop saves the slot's sequence state
(`llama_state_seq_get_data`: its KV cells) here, keyed by the tokens it holds. A later request
whose prompt shares a longer prefix with an entry than with any slot restores the entry into its
slot instead of re-reading the prompt. Bounded by bytes, least recently used out first. Pure
Python: the loop does the llama.cpp calls, this module only decides and remembers.

Only the loop thread changes or iterates `entries`; `/health` and `/metrics` read from other
threads, so what they read (`bytes`, `describe`) comes from counters, never from iterating.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


def as_tokens(tokens) -> np.ndarray:
    return np.asarray(tokens, dtype=np.int32)


@dataclass(eq=False)
class CacheEntry:
    tokens: np.ndarray
    data: memoryview  # the saved state, in the buffer llama.cpp wrote it to (no copy)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    saves: int = 0
    evictions: int = 0


@dataclass
class PromptCache:
    capacity: int  # bytes; 0 turns the cache off
    entries: "OrderedDict[int, CacheEntry]" = field(default_factory=OrderedDict)
    stats: CacheStats = field(default_factory=CacheStats)
    _next: int = 0
    _bytes: int = 0  # the entries' sizes, summed as they come and go

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def _drop(self, key: int | None = None) -> None:
        """Remove the entry `key` (None: the least recently used one)."""
        entry = self.entries.popitem(last=False)[1] if key is None else self.entries.pop(key)
        self._bytes -= entry.size

    def clear(self) -> None:
        self.entries.clear()
        self._bytes = 0

    def best(self, prompt: np.ndarray) -> tuple[CacheEntry | None, int]:
        """The entry sharing the longest prefix with `prompt`, and that length."""
        best, best_len = None, 0
        for entry in self.entries.values():
            n = common_prefix(entry.tokens, prompt)
            if n > best_len:
                best, best_len = entry, n
        return best, best_len

    def touch(self, entry: CacheEntry) -> None:
        """`entry` was restored: it is the most recently used now."""
        for key, e in self.entries.items():
            if e is entry:
                self.entries.move_to_end(key)
                return

    def covers(self, tokens: np.ndarray) -> bool:
        """Whether an entry already holds all of `tokens` (saving them again adds nothing)."""
        return any(len(e.tokens) >= len(tokens) and common_prefix(e.tokens, tokens) == len(tokens)
                   for e in self.entries.values())

    def put(self, tokens: np.ndarray, data: memoryview | bytes) -> bool:
        """Keep `data` for `tokens`; entries that are a prefix of it are superseded."""
        if not self.enabled or len(data) > self.capacity:
            return False
        for key, e in list(self.entries.items()):
            if len(e.tokens) <= len(tokens) and common_prefix(e.tokens, tokens) == len(e.tokens):
                self._drop(key)
        while self.entries and self._bytes + len(data) > self.capacity:
            self._drop()
            self.stats.evictions += 1
        self.entries[self._next] = CacheEntry(tokens.copy(), data)
        self._bytes += len(data)
        self._next += 1
        self.stats.saves += 1
        return True

    def describe(self) -> dict:
        return {"capacity_bytes": self.capacity, "bytes": self.bytes, "entries": len(self.entries),
                "hits": self.stats.hits, "misses": self.stats.misses, "saves": self.stats.saves,
                "evictions": self.stats.evictions}
