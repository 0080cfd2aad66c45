"""Timing rows at load (engine.rowcost.measure) on the real SmolLM2: the CPU here stands in for a
GPU, where the runner measures. The figures depend on the machine; what holds anywhere: a fitted,
rounded cost line, and the timed sequence left empty for the slot that serves next."""

from __future__ import annotations

import llama_cpp

from localgw.engine import rowcost
from localgw.engine.model import Model
from localgw.engine.types import LoadOptions
from tests.helpers import smollm2_path


def test_rows_are_timed_in_a_sequence_that_is_left_empty():
    model = Model("smol", str(smollm2_path()), LoadOptions(n_ctx=256), n_parallel=2,
                  n_gpu_layers=0, n_threads=2, n_threads_batch=2)
    try:
        cost = rowcost.measure(model.context.ctx, model.memory, 0, model.n_vocab)
        assert rowcost.MIN_PRICE <= cost.per_row < 10
        steps = round(cost.per_row / rowcost.PRICE_STEP, 6)
        assert steps == int(steps)  # rounded to the price step, so noise rarely moves it
        assert cost(1) == 1.0 and cost(rowcost.SPAN) >= cost(2) >= 1.0
        for seq in (0, 1):
            assert llama_cpp.llama_memory_seq_pos_max(model.memory, seq) == -1
    finally:
        model.close()
