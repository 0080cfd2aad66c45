"""What a batch of rows costs on the device a model runs on, in plain one-token steps.

Speculation's `auto` (engine.spec) drafts a length only where the tokens it expects beat the
cost of the rows it adds to the step. `RowCost` models a batch of `rows` rows against a step of
one row: 1 for one row, `base + per_row * rows` from two rows on (never below 1).

- On the CPU, and with any layer left there, `CPU_COST`: measured with SmolLM2 (Q4_1) on a
  2-core CPU, where the matrix products run row by row (0.6 + 0.55 per row: two rows cost 1.7
  steps). It is not measured at load: a 16-row batch of a 7B model costs seconds on a laptop's
  CPU, whose timings are noisy anyway.
- With every layer on a GPU, `measure` times a few decodes at load, in the first slot (its
  cells are removed after): the best of REPEATS decodes of 1, 2 and SPAN rows, logits on
  every row as a verification has them. Decode on a GPU is bound by reading the weights, so rows
  past the first cost little, and drafting pays at lower acceptance and with several streams.
  The fitted figures are rounded up (per_row to PRICE_STEP, base to BASE_STEP, per_row at least
  MIN_PRICE): the policy errs towards drafting less, and timing noise rarely moves the cost from
  one load to the next, so the draft lengths, which at a near tie can decide a token when the
  device's kernels round a batch's rows differently from a lone row (engine.spec), stay put.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import llama_cpp

from localgw.engine.batch import Batch

SPAN = 17           # rows of the longest batch timed: a pending token and a 16-token draft
REPEATS = 3         # timed decodes of each size (after one to warm up); the fastest counts
PRICE_STEP = 0.01
BASE_STEP = 0.05
MIN_PRICE = 0.01


@dataclass(frozen=True)
class RowCost:
    base: float
    per_row: float

    def __call__(self, rows: int) -> float:
        return 1.0 if rows <= 1 else max(1.0, self.base + self.per_row * rows)


CPU_COST = RowCost(0.6, 0.55)


def fit(one: float, two: float, span: float, rows: int = SPAN) -> RowCost:
    """The cost line through the timings of 2 and `rows` rows, in units of the one-row time,
    rounded up (module docstring)."""
    per_row = max((span - two) / ((rows - 2) * one), MIN_PRICE)
    per_row = math.ceil(round(per_row / PRICE_STEP, 6)) * PRICE_STEP
    base = two / one - 2 * per_row
    base = math.ceil(round(base / BASE_STEP, 6)) * BASE_STEP
    return RowCost(round(base, 2), round(per_row, 2))


def measure(ctx, memory, seq: int, n_vocab: int) -> RowCost:
    """Time decodes of 1, 2 and SPAN rows in sequence `seq` (empty, and emptied again after) and
    fit the cost line (module docstring)."""
    batch = Batch(SPAN)
    tokens = [1 + i % max(n_vocab - 1, 1) for i in range(SPAN)]

    def best(rows: int) -> float:
        times = []
        for _ in range(REPEATS + 1):
            batch.clear()
            batch.add(tokens[:rows], 0, seq, True, True)
            start = time.perf_counter()
            rc = batch.decode(ctx)
            llama_cpp.llama_synchronize(ctx)
            times.append(time.perf_counter() - start)
            llama_cpp.llama_memory_seq_rm(memory, seq, 0, -1)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc}) while timing {rows} rows")
        return min(times[1:])

    try:
        return fit(best(1), best(2), best(SPAN))
    finally:
        llama_cpp.llama_memory_seq_rm(memory, seq, 0, -1)
        batch.close()
