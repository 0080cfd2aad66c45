"""Speculative decoding: draft tokens cheaply, let the target model verify them in the step's batch.

Why it is exact. A generating task's step decodes its pending token and samples the next one
from that row. Speculating, the task adds `[pending] + draft` to the step's one batch, with
logits on every row; row j then holds what decoding the context up to draft[j-1] would give.
On llama.cpp's CPU backend a row comes out bit-identical whether its token is decoded alone,
as row k of a batch of its sequence, or beside another sequence's rows, as long as a task
verifies at most MAX_ROWS rows (flash attention tiles at 64; engine.loop.prompt_piece). The
task's own sampler then samples row 0, and while the token it sampled equals the next draft
token and the choice goes on (no end of generation, stop string or budget), it samples the
next row (decoding.Task.verify). Each row is sampled exactly as it would be token by token:
same logits, same chain state (grammar, penalties, the seeded random numbers consumed once per
token), and a row is only sampled when every token before it is the one sampling chose. So the
same request and seed give the same text, token ids and logprobs with speculation on or off.
The first disagreement ends the run: its sampled token becomes the new pending one, and the
cells of the rejected draft tokens leave the KV cache (`llama_memory_seq_rm` from the slot's
new length), so the slot's `tokens` and its cells agree as if no draft had been made.

Drafters (the `Drafter` protocol) propose; they never decide a token of the output:
- `NgramDrafter`: look-ups in the task's own context (prompt and output). The longest of the
  last NGRAM_SIZES tokens that occurred earlier proposes what followed its most recent earlier
  occurrence. The index grows by the tokens added since the last step (never a rescan), and a
  run that keeps being accepted is followed on in place of a new look-up.
- `DraftModel` (engine.draft_model): a small model of the same vocabulary, its own context.

`Speculation` is what the loop holds (None with `--spec off`: the loop is then exactly the
plain one). It decides per step how many tokens each task may draft (`limits`), asks the
drafter, and keeps the counts shown by /health and /metrics. Modes:
- `ngram` / `draft`: every task drafts every step, up to `--spec-max` tokens;
- `auto`: speculate where it pays. Verification rows cost real compute on a CPU, so a task
  drafts only while its drafts are accepted: its draft length grows while whole drafts are
  accepted and shrinks to what was, and a draft rejected at its first token makes the task
  skip a growing number of steps (1, 2, 4, ... AUTO_MAX_SKIP). And no task drafts while more
  than AUTO_MAX_STREAMS tasks decode together: their one-row batch already keeps the cores
  busy, and extra rows would slow every stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from localgw import defaults

if TYPE_CHECKING:
    from localgw.engine.decoding import Task

log = logging.getLogger("localgw.engine")

MODES = defaults.SPEC_MODES
MAX_ROWS = 63             # rows one task verifies in a step: pending + at most 62 draft tokens
NGRAM_SIZES = (4, 3, 2)   # n-gram lengths looked up, longest first
AUTO_START = 4            # a task's first draft length under auto
AUTO_MIN = 2              # the shortest draft auto asks for once a task speculates
AUTO_MAX_SKIP = 32        # most steps a task sits out after rejected drafts
AUTO_MAX_STREAMS = 2      # auto drafts only while at most this many tasks decode together


class Drafter(Protocol):
    """Proposes draft tokens for the tasks that decode this step. Runs on the loop thread only."""

    def propose(self, tasks: list["Task"], limits: list[int]) -> list[list[int]]:
        """For each task, a draft of at most limits[i] tokens (0: none wanted; [] is always a
        valid answer) continuing the task's context, which is `task.slot.tokens + [task.pending]`
        (prompt and output so far; `pending` is the token sampled last step, not yet decoded).
        All tasks of one call are drafted together (a draft model batches them)."""

    def settle(self, task: "Task", proposed: int, accepted: int) -> None:
        """After verification: of `proposed` draft tokens, the first `accepted` were kept. The
        target slot's `tokens` now end with them (rejected ones are gone from its KV)."""

    def forget(self, seq: int) -> None:
        """The slot `seq` starts over or its task ended: drop any per-slot state (a draft model
        keeps its cells for reuse only if it checks them against the next context)."""

    def close(self) -> None: ...


# ---- look-ups in the context ------------------------------------------------------------------
@dataclass(eq=False)
class _Context:
    """One task's context as the n-gram drafter knows it, with its index."""

    task: object
    tokens: list[int] = field(default_factory=list)  # slot tokens + pending, as of the last call
    known: int = 0          # of them, how many were slot tokens (the rest: the pending token)
    indexed: int = 0        # continuations indexed: positions p < indexed
    index: dict = field(default_factory=dict)  # n-gram tuple → position of its continuation
    follow: int = -1        # position whose token should come next, on an accepted run
    source: int = -1        # where the last draft was copied from


class NgramDrafter:
    """Drafts by looking the context's last tokens up in the context itself (module docstring)."""

    def __init__(self, sizes: tuple[int, ...] = NGRAM_SIZES):
        self.sizes = sizes
        self._by_seq: dict[int, _Context] = {}

    def propose(self, tasks: list["Task"], limits: list[int]) -> list[list[int]]:
        return [self.draft(t, k) if k > 0 else [] for t, k in zip(tasks, limits)]

    def draft(self, task: "Task", limit: int) -> list[int]:
        c = self._sync(task)
        toks = c.tokens
        start = c.follow if 0 < c.follow < len(toks) else self._look_up(c)
        c.source = start
        return toks[start:start + limit] if start >= 0 else []

    def settle(self, task: "Task", proposed: int, accepted: int) -> None:
        c = self._by_seq.get(task.slot.seq)
        if c is None or c.task is not task:
            return
        # the next step's context ends with the accepted tokens and a new pending one; if that
        # one is what came next in the source as well, the run goes on from there
        c.follow = c.source + accepted + 1 if proposed and accepted == proposed else -1

    def forget(self, seq: int) -> None:
        self._by_seq.pop(seq, None)

    def close(self) -> None:
        self._by_seq.clear()

    def _sync(self, task: "Task") -> _Context:
        """The task's context, its index brought up to date with the tokens added since."""
        slot_tokens = task.slot.tokens
        c = self._by_seq.get(task.slot.seq)
        if c is None or c.task is not task or len(slot_tokens) < c.known:
            c = self._by_seq[task.slot.seq] = _Context(task)
        toks = c.tokens
        del toks[c.known:]                  # the last call's pending token, now a slot token
        toks.extend(slot_tokens[c.known:])
        c.known = len(toks)
        toks.append(task.pending)
        if 0 < c.follow < len(toks) and toks[c.follow - 1] != toks[-1]:
            c.follow = -1                   # the run's next token was not the one sampled
        self._index_to(c, len(toks))
        return c

    def _index_to(self, c: _Context, end: int) -> None:
        """Index every n-gram whose continuation lies before position `end`."""
        toks, index, sizes = c.tokens, c.index, self.sizes
        for p in range(max(c.indexed, 1), end):
            for n in sizes:
                if p >= n:
                    index[tuple(toks[p - n:p])] = p
        c.indexed = max(c.indexed, end)

    def _look_up(self, c: _Context) -> int:
        """Where the continuation of the context's longest indexed last n-gram starts; -1."""
        toks = c.tokens
        for n in self.sizes:
            if len(toks) > n:
                p = c.index.get(tuple(toks[-n:]))
                if p is not None:
                    return p
        return -1


# ---- the policy and the counts ---------------------------------------------------------------
@dataclass(eq=False)
class _Pace:
    """One task's speculation under auto: how long its next draft may be, how long it waits."""

    task: object
    length: int = AUTO_START
    skip: int = 0           # steps left to sit out
    misses: int = 0         # drafts in a row rejected at their first token


class Speculation:
    """The loop's side of speculative decoding: limits, the drafter, the counts."""

    def __init__(self, mode: str, drafter: Drafter, spec_max: int, drafter_name: str = "ngram"):
        self.mode = mode
        self.drafter = drafter
        self.drafter_name = drafter_name
        self.spec_max = max(0, min(spec_max, MAX_ROWS - 1))
        self.drafted = 0     # draft tokens verified (read by other threads: plain ints)
        self.accepted = 0    # of them, kept
        self._paces: dict[int, _Pace] = {}

    def describe(self) -> dict:
        return {"mode": self.mode, "drafter": self.drafter_name, "max": self.spec_max,
                "drafted": self.drafted, "accepted": self.accepted}

    def limits(self, tasks: list["Task"]) -> list[int] | None:
        """How many tokens each task may draft this step; None when none may."""
        if not self.spec_max or (self.mode == "auto" and len(tasks) > AUTO_MAX_STREAMS):
            return None
        # a draft longer than the task's budget leaves could never be kept
        out = [max(min(self._wanted(t), t.budget - t.generated - 1), 0) for t in tasks]
        return out if any(k > 0 for k in out) else None

    def _wanted(self, task: "Task") -> int:
        if self.mode != "auto":
            return self.spec_max
        pace = self._pace(task)
        if pace.skip:
            pace.skip -= 1
            return 0
        return min(pace.length, self.spec_max)

    def _pace(self, task: "Task") -> _Pace:
        pace = self._paces.get(task.slot.seq)
        if pace is None or pace.task is not task:
            pace = self._paces[task.slot.seq] = _Pace(task)
        return pace

    def drafts(self, tasks: list["Task"], rows: int) -> list[list[int]] | None:
        """Each task's draft for this step (within its limit, and all of them with the tasks'
        pending tokens within `rows`, the batch's size); None when no task drafts."""
        limits = self.limits(tasks)
        if limits is None:
            return None
        room = rows - len(tasks)
        for i, k in enumerate(limits):
            limits[i] = min(k, max(room, 0))
            room -= limits[i]
        drafts = self.drafter.propose(tasks, limits)
        drafts = [d[:k] if len(d) > k else d for d, k in zip(drafts, limits)]
        return drafts if any(drafts) else None

    def settle(self, task: "Task", proposed: int, accepted: int) -> None:
        """A task's draft was verified: count it, tell the drafter, pace the task."""
        self.drafted += proposed
        self.accepted += accepted
        self.drafter.settle(task, proposed, accepted)
        if proposed and self.mode == "auto":
            pace_after(self._pace(task), proposed, accepted, self.spec_max)

    def forget(self, seq: int) -> None:
        self._paces.pop(seq, None)
        self.drafter.forget(seq)

    def close(self) -> None:
        self._paces.clear()
        self.drafter.close()


def pace_after(pace: _Pace, proposed: int, accepted: int, spec_max: int) -> None:
    """auto's rule after a verified draft: a whole draft accepted doubles the next one's length;
    a partly accepted one sets it to what was kept plus one; one rejected at its first token
    also makes the task sit out 1, 2, 4 ... AUTO_MAX_SKIP steps, more after each such miss."""
    if accepted == proposed:
        pace.length = min(max(pace.length, proposed) * 2, spec_max)
        pace.misses = 0
    elif accepted:
        pace.length = max(accepted + 1, AUTO_MIN)
        pace.misses = 0
    else:
        pace.length = AUTO_MIN
        pace.skip = min(1 << pace.misses, AUTO_MAX_SKIP)
        pace.misses += 1
