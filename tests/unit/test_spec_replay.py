"""scripts/spec_replay.py: engine.spec's policy replayed over fixed answers, and its ceiling."""

import argparse
import importlib.util
import random
import sys
from pathlib import Path

import pytest

from localgw.engine.rowcost import CPU_COST, RowCost

_spec = importlib.util.spec_from_file_location(
    "spec_replay", Path(__file__).resolve().parents[2] / "scripts" / "spec_replay.py")
spec_replay = sys.modules["spec_replay"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(spec_replay)

GPU = spec_replay.GPU_LINE


def text(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1000, 40000) for _ in range(n)]


def edited(tokens: list[int], every: int, seed: int) -> list[int]:
    """A copy with one token in every `every` changed: look-ups come true, then one misses."""
    rng = random.Random(seed)
    return [rng.randrange(40000, 49000) if i % every == every - 1 else t
            for i, t in enumerate(tokens)]


def test_off_costs_a_plain_step_per_token():
    source = text(300, 1)
    r = spec_replay.replay(source, source[:200], CPU_COST, mode="off")
    assert r.speedup == 1.0 and r.drafted == 0 and r.steps == [1] * 200


def test_a_verbatim_copy_is_drafted_and_kept():
    source = text(300, 2)
    cpu = spec_replay.replay(source, source, CPU_COST)
    gpu = spec_replay.replay(source, source, GPU)
    assert cpu.kept == cpu.drafted > 200
    assert 1.3 < cpu.speedup <= spec_replay.ceiling(source, source, CPU_COST)
    assert gpu.speedup > 3 * cpu.speedup / 2  # rows past the first cost little on a GPU
    assert sum(cpu.steps) - len(cpu.steps) == cpu.drafted


def test_new_text_drafts_nothing():
    prompt, answer = text(300, 3), text(200, 4)
    r = spec_replay.replay(prompt, answer, CPU_COST)
    assert (r.speedup, r.drafted) == (1.0, 0)
    assert spec_replay.ceiling(prompt, answer, CPU_COST) == 1.0


@pytest.mark.parametrize("every", [6, 12, 30])
def test_the_ceiling_bounds_auto_on_an_edited_copy(every):
    source = text(400, every)
    answer = edited(source, every, every)
    for cost in (CPU_COST, GPU):
        auto = spec_replay.replay(source, answer, cost)
        assert 0.97 < auto.speedup <= spec_replay.ceiling(source, answer, cost)
        assert 0 < auto.kept < auto.drafted


def test_the_ceiling_drafts_only_what_pays():
    source = text(300, 5)
    # a row that costs a plain step makes no draft worth its rows
    assert spec_replay.ceiling(source, source, RowCost(0.0, 1.0)) == 1.0


def test_arguments_are_checked():
    assert spec_replay.parse_cost("0.3,0.7") == RowCost(0.3, 0.7)
    with pytest.raises(argparse.ArgumentTypeError, match="BASE,PER_ROW"):
        spec_replay.parse_cost("fast")
    assert spec_replay.parse_fields('{"repetition_penalty": 1}') == {"repetition_penalty": 1}
    for bad in ("{bad", "[1]"):
        with pytest.raises(argparse.ArgumentTypeError, match="JSON object"):
            spec_replay.parse_fields(bad)
    with pytest.raises(ValueError, match="empty answer"):
        spec_replay.replay([1, 2], [], CPU_COST)
