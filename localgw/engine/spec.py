"""Speculative decoding: draft tokens cheaply, let the target model verify them in the step's batch.

What is exact, and what rests on llama.cpp. A generating task's step decodes its pending token
and samples the next one from that row. Speculating, the task adds `[pending] + draft` to the
step's one batch, with logits on every row; row j then holds what decoding the context up to
draft[j-1] gives. The task's own sampler samples row 0, and while the token it sampled equals
the next draft token and the choice goes on (no end of generation, stop string or budget), it
samples the next row (decoding.Task.verify). Each row is sampled exactly as it would be token by
token: same chain state (grammar, penalties, the seeded random numbers consumed once per token),
and a row is only sampled when every token before it is the one sampling chose. So every token
is the sampler's choice from the model's logits, and a request served alone repeats its text
with the same seed and mode: what a task drafts depends on its own context and its own pacing
state (`_Pace`, per task) and the row cost fixed when the model loaded (engine.rowcost), never
on what the server did before. Pacing must stay per task for that reason.
Whether the text is also the same as without speculation depends on the logits being the same
bits for a row decoded alone and in a batch, which is llama.cpp's choice of kernels. On its CPU
backend that holds for weight types it multiplies row by row (vec_dot: Q4_1, the embedded model)
while a task verifies at most MAX_ROWS rows (flash attention tiles at 64;
engine.loop.prompt_piece) and its KV view is under 512 cells (a context of at most 256 tokens:
llama.cpp pads the view to 256). From 512 cells on, the CPU's flash attention computes a lone
token's row by splitting the cells among the threads and merging the parts, which rounds
differently from the rows of a batch; types that llama.cpp multiplies in tiles when a batch has
2 rows or more (llamafile's sgemm: Q4_0, Q8_0, F16; the repacked types) and GPU kernels that
choose by batch size round differently at any length. A verified row then differs from the lone
token's in its last bits, as rows of streams decoded together do (engine.runner), and a long
output can leave its text without speculation at a near tie. Requiring bit-equality everywhere
would mean verifying nothing past 256 tokens on the one backend where it holds: the gain is
where the contexts are long.
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
plain one). It decides per step how many tokens each task may draft (`drafts`), asks the
drafter, and keeps the counts shown by /health and /metrics. Modes:
- `ngram` / `draft`: every task drafts every step, up to `--spec-max` tokens;
- `auto`: speculate where it pays. Rows cost compute (engine.rowcost: two rows cost nearly two
  steps on a CPU, little more than one on a GPU), so a draft pays only when enough of it is kept.
  Each task keeps a moving estimate of the rate at which its draft tokens are kept, for each way a
  draft is found (a look-up of 4, 3 or 2 tokens, or the run of an earlier draft that came true),
  fed by its verified drafts and by guesses: when a look-up is not drafted, its first token is
  checked against the token the task samples, at no cost. The estimate is the share of tokens
  kept, older ones fading (`_Pace.observe`), from a prior worth a single token: a copy shows
  itself in a few right guesses, and a long run weighs as in a moving average. The step is planned
  task by task: starting from every task's pending row, each task drafts the length that gives the
  step the most tokens per unit of its cost (`best_length`), or nothing when no length lifts the
  step above the plan so far and above AUTO_MIN_GAIN times its plain rows' rate. One stream alone
  weighs its draft against a plain step; with several streams a draft's rows are priced against a
  batch whose rows already cost, which on a CPU leaves nothing worth drafting and on a GPU still
  leaves long drafts that are mostly kept. A draft model, whose drafts are not free, drafts a
  short probe now and then to keep its estimate moving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from localgw import defaults
from localgw.engine.rowcost import CPU_COST, RowCost

if TYPE_CHECKING:
    from localgw.engine.decoding import Task

MODES = defaults.SPEC_MODES
MAX_ROWS = 63             # rows one task verifies in a step: pending + at most 62 draft tokens
NGRAM_SIZES = (4, 3, 2)   # n-gram lengths looked up, longest first
FOLLOW = 0                # a draft's kind: the run of an earlier draft that came true
AUTO_PRIOR = 0.5          # a task's acceptance rate before anything was observed ...
AUTO_PRIOR_WEIGHT = 1.0   # ... worth this many observed draft tokens: a few tell
AUTO_DECAY = 0.05         # each observed draft token fades what came before by this share
AUTO_MIN_GAIN = 1.15      # tokens per unit of cost a draft must promise over a plain step
AUTO_PROBE_EVERY = 16     # a costly drafter below the bar still drafts once in so many steps
AUTO_PROBE = 2            # ... this many tokens


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
    follow: int = -1        # where the last draft's source goes on, while its tokens came true
    source: int = -1        # where the last draft was copied from
    kind: int = -1          # how the last draft was found: FOLLOW, an n-gram's n, -1 none


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
        n = len(toks)
        if 0 < c.follow < n:
            start, c.kind = c.follow, FOLLOW
        else:
            start, c.kind = self._look_up(c)
        c.source = start
        if start < 0:
            return []
        draft = toks[start:start + limit]
        for i in range(len(draft), limit):  # past the context's end the draft repeats itself,
            draft.append(draft[start + i - n])  # as a loop in the text would
        return draft

    def kind(self, seq: int) -> int:
        """How the last draft for slot `seq` was found: FOLLOW (the run of an earlier draft whose
        tokens all came true), the n of the n-gram looked up, or -1 (none)."""
        c = self._by_seq.get(seq)
        return -1 if c is None else c.kind

    def settle(self, task: "Task", proposed: int, accepted: int) -> None:
        pass  # the next call sees what was kept in the slot's tokens (_sync)

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
        old = len(toks)
        del toks[c.known:]                  # the last call's pending token, now a slot token
        toks.extend(slot_tokens[c.known:])
        c.known = len(toks)
        toks.append(task.pending)
        # the tokens since the last draft, if they all came as its source goes on (a loop past
        # the old end included: position by position, each is the one a source's length back)
        new = len(toks) - old
        c.follow = c.source + new if 0 <= c.source < old and 0 < new and \
            toks[c.source:c.source + new] == toks[old:] else -1
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

    def _look_up(self, c: _Context) -> tuple[int, int]:
        """Where the continuation of the context's longest indexed last n-gram starts, and
        that n; (-1, -1) when none is indexed."""
        toks = c.tokens
        for n in self.sizes:
            if len(toks) > n:
                p = c.index.get(tuple(toks[-n:]))
                if p is not None:
                    return p, n
        return -1, -1


# ---- the policy and the counts ---------------------------------------------------------------
def expected_tokens(rate: float, k: int) -> float:
    """Tokens a step gives with a draft of `k`, each kept with probability `rate` once the ones
    before it were: the sampled one plus the kept run (1 + rate + rate^2 + ... + rate^k)."""
    return float(k + 1) if rate >= 1.0 else (1.0 - rate ** (k + 1)) / (1.0 - rate)


@dataclass
class Plan:
    """A step being planned: its rows, the tokens they are expected to give, and the rate a draft
    must lift the step to: AUTO_MIN_GAIN times what the tasks' plain rows give per unit of cost."""

    rows: int
    tokens: float
    bar: float

    @classmethod
    def plain(cls, tasks: int, cost: RowCost) -> "Plan":
        return cls(tasks, float(tasks), AUTO_MIN_GAIN * tasks / cost(tasks))

    def add(self, rate: float, k: int) -> None:
        self.rows += k
        self.tokens += expected_tokens(rate, k) - 1.0


def best_length(rate: float, spec_max: int, cost: RowCost = CPU_COST,
                plan: Plan | None = None) -> int:
    """The draft length for a task at this acceptance rate that gives the step planned so far
    (one stream's plain step when None) the most tokens per unit of cost, if that clears the
    plan's bar and beats the plan without it; else 0."""
    plan = plan or Plan.plain(1, cost)
    best, best_gain = 0, max(plan.bar, plan.tokens / cost(plan.rows))
    for k in range(1, spec_max + 1):
        gain = (plan.tokens - 1.0 + expected_tokens(rate, k)) / cost(plan.rows + k)
        if gain > best_gain:
            best, best_gain = k, gain
    return best


@dataclass(eq=False)
class _Pace:
    """One task's speculation under auto: the estimated rate at which its draft tokens are kept,
    by how the draft was found (a look-up drafter's kinds; one for a draft model)."""

    task: object
    rates: dict = field(default_factory=dict)    # kind → rate
    weights: dict = field(default_factory=dict)  # kind → what its rate rests on, in tokens
    kind: int = -1          # the kind of the draft being verified
    guess: tuple | None = None  # (token, kind): a look-up's next token, not verified
    idle: int = 0           # steps since the last verified draft (a costly drafter's probes)

    def rate(self, kind: int) -> float:
        return self.rates.get(kind, AUTO_PRIOR)

    def observe(self, kind: int, kept: int, missed: bool) -> None:
        """`kept` draft tokens of this kind were right, then (if `missed`) one was wrong. The
        rate is the share kept, each older token (and the prior) fading by AUTO_DECAY per new
        one: from the prior's weight of one token, three right guesses in a row make a copy
        worth drafting on a CPU, and a long run is forgotten as fast as a moving average."""
        rate = self.rates.get(kind, AUTO_PRIOR)
        weight = self.weights.get(kind, AUTO_PRIOR_WEIGHT)
        for right in [True] * kept + [False] * missed:
            old = weight * (1.0 - AUTO_DECAY)
            weight = old + 1.0
            rate = (rate * old + right) / weight
        self.rates[kind], self.weights[kind] = rate, weight


class Speculation:
    """The loop's side of speculative decoding: limits, the drafter, the counts."""

    def __init__(self, mode: str, drafter: Drafter, spec_max: int, drafter_name: str = "ngram",
                 cost: RowCost = CPU_COST):
        self.mode = mode
        self.drafter = drafter
        self.drafter_name = drafter_name
        self.cheap = isinstance(drafter, NgramDrafter)  # a look-up costs next to nothing
        self.spec_max = max(0, min(spec_max, MAX_ROWS - 1))
        self.cost = cost     # what rows cost on the model's device (engine.rowcost), for auto
        self.drafted = 0     # draft tokens verified (read by other threads: plain ints)
        self.accepted = 0    # of them, kept
        self._paces: dict[int, _Pace] = {}

    def describe(self) -> dict:
        out = {"mode": self.mode, "drafter": self.drafter_name, "max": self.spec_max,
               "drafted": self.drafted, "accepted": self.accepted}
        if self.mode == "auto":  # what auto's choices weigh drafts against
            out["row_cost"] = {"base": self.cost.base, "per_row": self.cost.per_row}
        return out

    def drafts(self, tasks: list["Task"], rows: int) -> list[list[int]] | None:
        """Each task's draft for this step (within its limit, and all of them with the tasks'
        pending tokens within `rows`, the batch's size); None when no task drafts."""
        if not self.spec_max:
            return None
        auto = self.mode == "auto"
        limits, room = [], rows - len(tasks)
        for t in tasks:
            # a draft longer than the task's budget leaves could never be kept
            k = max(min(self.spec_max, t.budget - t.generated - 1, room), 0)
            limits.append(k)
            room -= k
        if not any(limits):
            return None
        plan = Plan.plain(len(tasks), self.cost)
        if auto and not self.cheap:
            limits = [self._costly_limit(t, k, plan) for t, k in zip(tasks, limits)]
            if not any(limits):
                return None
        drafts = self.drafter.propose(tasks, limits)
        if auto and self.cheap:
            drafts = [self._choose(t, d[:k], plan) for t, d, k in zip(tasks, drafts, limits)]
        else:
            drafts = [d[:k] for d, k in zip(drafts, limits)]
        return drafts if any(drafts) else None

    def _choose(self, task: "Task", draft: list[int], plan: Plan) -> list[int]:
        """auto with look-ups: check the last step's guess, then keep as much of this look-up
        as pays at the rate of its kind in the step planned so far; the rest of a look-up not
        drafted is a guess."""
        pace = self._pace(task)
        if pace.guess is not None:
            token, kind = pace.guess
            hit = token == task.pending
            pace.observe(kind, int(hit), not hit)
            pace.guess = None
        if not draft:
            return draft
        pace.kind = kind = self.drafter.kind(task.slot.seq)
        rate = pace.rate(kind)
        k = best_length(rate, len(draft), self.cost, plan)
        if k:
            plan.add(rate, k)
        else:
            pace.guess = (draft[0], kind)
        return draft[:k]

    def _costly_limit(self, task: "Task", limit: int, plan: Plan) -> int:
        """auto with a draft model: the length that pays at its rate in the step planned so
        far; a short probe now and then when none does (its rate moves only by drafting)."""
        pace = self._pace(task)
        rate = pace.rate(pace.kind)
        k = best_length(rate, limit, self.cost, plan)
        if not k:
            pace.idle += 1
            if pace.idle >= AUTO_PROBE_EVERY:
                k = min(AUTO_PROBE, limit)
        plan.add(rate, k)
        return k

    def _pace(self, task: "Task") -> _Pace:
        pace = self._paces.get(task.slot.seq)
        if pace is None or pace.task is not task:
            pace = self._paces[task.slot.seq] = _Pace(task)
        return pace

    def settle(self, task: "Task", proposed: int, accepted: int) -> None:
        """A task's draft was verified: count it, tell the drafter, pace the task."""
        self.drafted += proposed
        self.accepted += accepted
        self.drafter.settle(task, proposed, accepted)
        if proposed and self.mode == "auto":
            pace = self._pace(task)
            pace.observe(pace.kind, accepted, accepted < proposed)
            pace.idle = 0

    def forget(self, seq: int) -> None:
        self._paces.pop(seq, None)
        self.drafter.forget(seq)

    def close(self) -> None:
        self._paces.clear()
        self.drafter.close()
