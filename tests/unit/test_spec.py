"""Speculative decoding's pure logic (engine.spec): the n-gram drafter and auto's pacing."""

from __future__ import annotations

from localgw.engine.rowcost import CPU_COST, RowCost, fit
from localgw.engine.spec import (AUTO_DECAY, AUTO_PRIOR, FOLLOW, MAX_ROWS, NgramDrafter, Plan,
                                 Speculation, best_length, expected_tokens)
from tests.helpers import FakeSlot, FakeTask


def task(tokens, pending, seq=0, **kw) -> FakeTask:
    return FakeTask(FakeSlot(seq, list(tokens)), pending, **kw)


def advance(t: FakeTask, accepted: list[int], sampled: int) -> None:
    """What the loop does after verification: pending and the kept draft tokens join the slot."""
    t.slot.tokens += [t.pending, *accepted]
    t.pending = sampled
    t.generated += 1 + len(accepted)


def test_a_repeated_ngram_proposes_what_followed_it_last_time():
    d = NgramDrafter()
    text = [10, 11, 12, 13, 14, 15, 16, 17, 99, 98, 10, 11]
    t = task(text, 12)  # context ... 10 11 12: it was followed by 13 14 15 ...
    assert d.propose([t], [4]) == [[13, 14, 15, 16]]
    assert d.propose([t], [0]) == [[]]
    # past the context's end, the draft goes on as the loop it found would
    assert d.propose([t], [14]) == [[13, 14, 15, 16, 17, 99, 98, 10, 11, 12, 13, 14, 15, 16]]


def test_the_longest_ngram_and_the_most_recent_occurrence_win():
    d = NgramDrafter()
    # "5 6" followed by 1 early, by 2 later; "4 5 6" followed by 3
    ctx = [4, 5, 6, 3, 0, 5, 6, 1, 0, 5, 6, 2, 0, 4, 5]
    assert d.propose([task(ctx, 6)], [1]) == [[3]]
    d.forget(0)
    assert d.propose([task(ctx[:-2] + [7, 5], 6)], [1]) == [[2]]


def test_no_match_no_draft():
    d = NgramDrafter()
    assert d.propose([task([1, 2, 3, 4, 5], 6)], [8]) == [[]]
    assert d.propose([task([], 6, seq=1)], [8]) == [[]]


def test_the_index_grows_with_the_context_and_an_accepted_run_is_followed():
    d = NgramDrafter()
    source = list(range(100, 140))
    t = task([1, 2, *source, 7, 8, 100, 101], 102)
    assert d.propose([t], [4]) == [[103, 104, 105, 106]]
    d.settle(t, 4, 4)
    advance(t, [103, 104, 105, 106], 107)  # the whole draft kept, and the run goes on
    assert d.propose([t], [3]) == [[108, 109, 110]]
    d.settle(t, 3, 1)
    advance(t, [108], 55)  # rejected at 109: a fresh look-up, which finds nothing
    assert d.propose([t], [3]) == [[]]
    d.settle(t, 0, 0)
    advance(t, [], 56)
    advance(t, [], 57)  # tokens added while the task did not draft are indexed too
    advance(t, [], 8)
    advance(t, [], 55)
    advance(t, [], 56)
    advance(t, [], 57)  # ... 55 56 57 8 55 56 57: "55 56 57" was followed by 8 55
    assert d.propose([t], [2]) == [[8, 55]]


def test_a_new_task_in_the_slot_starts_a_new_index():
    d = NgramDrafter()
    first = task([1, 2, 3, 4, 1, 2], 3)
    assert d.propose([first], [2]) == [[4, 1]]
    second = task([9, 9, 9, 1, 2], 3)  # same slot, another task: the old context is gone
    assert d.propose([second], [2]) == [[]]
    d.forget(0)
    assert d.propose([first], [2]) == [[4, 1]]


def spec(mode="auto", spec_max=16, cost=CPU_COST) -> Speculation:
    return Speculation(mode, NgramDrafter(), spec_max, cost=cost)


def repeating(seq=0) -> FakeTask:
    return task([1, 2, 3, 4, 5, 6, 7, 8, 9] * 4 + [1, 2], 3, seq=seq)


def test_ngram_mode_drafts_up_to_spec_max_within_the_budget():
    s = spec("ngram", spec_max=5)
    t = repeating()
    assert s.drafts([t], 2048) == [[4, 5, 6, 7, 8]]
    t.generated = t.budget - 3  # two more tokens could be kept at most
    assert s.drafts([t], 2048) == [[4, 5]]
    t.generated = t.budget - 1
    assert s.drafts([t], 2048) is None
    assert spec("ngram", spec_max=500).spec_max == MAX_ROWS - 1
    t.generated = 1
    two = [t, repeating(seq=1)]
    assert s.drafts(two, 2 + 7) == [[4, 5, 6, 7, 8], [4, 5]]  # all rows fit in the batch


def test_auto_drafts_the_length_that_pays_at_the_rate_it_sees():
    assert best_length(AUTO_PRIOR, 16) == 0
    assert best_length(0.8, 16) == 0  # two rows cost nearly two steps on a CPU
    lengths = [best_length(r, 16) for r in (0.9, 0.95, 0.99, 1.0)]
    assert lengths == sorted(lengths) and 0 < lengths[0] < lengths[-1] == 16
    assert best_length(1.0, 5) == 5
    assert expected_tokens(0.5, 2) == 1.75 and expected_tokens(1.0, 3) == 4
    assert CPU_COST(1) == 1.0 and CPU_COST(2) > 1.5


GPU_COST = RowCost(1.0, 0.02)  # rows past the first cost little: decode reads the weights once


def test_where_rows_cost_little_auto_drafts_at_lower_rates():
    assert best_length(0.8, 16, GPU_COST) > 0 == best_length(0.8, 16)
    assert best_length(AUTO_PRIOR, 16, GPU_COST) > 0
    assert best_length(0.1, 16, GPU_COST) == 0  # a plain step beats nine rows in ten wasted
    assert best_length(1.0, 16, GPU_COST) == 16


def test_a_draft_is_priced_against_the_step_planned_so_far():
    # four streams on a CPU: their rows already cost 2.8 steps, and a draft nearly all kept adds
    # less than it costs; on a GPU the same draft multiplies the step's tokens
    assert best_length(0.99, 16, CPU_COST, Plan.plain(4, CPU_COST)) == 0
    gpu = Plan.plain(4, GPU_COST)
    for _ in range(4):  # each stream's draft pays for itself, the last as the first
        assert best_length(0.99, 16, GPU_COST, gpu) == 16
        gpu.add(0.99, 16)
    # one stream: the plan is the stream's own plain step
    assert best_length(0.95, 16, CPU_COST, Plan.plain(1, CPU_COST)) == best_length(0.95, 16)


def test_the_cost_line_is_fitted_from_timings_and_rounded_up():
    # 1 row 10 ms, 2 rows 10.4 ms, 17 rows 12.5 ms: 0.014 a row -> 0.02; base 1.04 - 0.04 -> 1.0
    assert fit(0.010, 0.0104, 0.0125) == RowCost(1.0, 0.02)
    # rows that cost what the CPU measured come out as its figure
    assert fit(0.010, 0.017, 0.010 * (0.6 + 0.55 * 17)) == CPU_COST
    # noise that makes more rows look cheaper than fewer is read as the least price
    assert fit(0.010, 0.012, 0.011).per_row == 0.01
    assert fit(0.010, 0.0104, 0.01251) == fit(0.010, 0.0104, 0.0125)  # small noise: same cost


def test_auto_learns_from_guesses_then_drafts_and_backs_off_on_misses():
    s = spec("auto", spec_max=16)
    t = repeating()  # 1 2 3 ... 9, four times, then 1 2 | 3
    steps = 0
    while (d := s.drafts([t], 2048)) is None:  # look-ups' guesses, checked token by token
        following = t.pending % 9 + 1
        advance(t, [], following)
        steps += 1
    assert 2 < steps < 30  # a few right guesses first: never on the prior alone
    assert d[0] == [(t.pending + i) % 9 + 1 for i in range(len(d[0]))]
    pace = s._pace(t)
    assert pace.kind == FOLLOW  # the look-up's source kept coming true
    rate = pace.rate(FOLLOW)
    s.settle(t, len(d[0]), len(d[0]))
    assert pace.rate(FOLLOW) > rate
    for _ in range(3):
        s.settle(t, 4, 0)  # rejected at once, again and again: no more drafts
    assert s.drafts([t], 2048) is None
    assert (s.drafted, s.accepted) == (len(d[0]) + 12, len(d[0]))


def sure(pace, rate: float = 0.99) -> None:
    """A pace whose every kind was kept at `rate` over a long run (a moving average's weight)."""
    pace.rates = dict.fromkeys((FOLLOW, 2, 3, 4), rate)
    pace.weights = dict.fromkeys((FOLLOW, 2, 3, 4), 1.0 / AUTO_DECAY)


def test_auto_does_not_draft_where_many_streams_fill_a_cpu():
    s = spec("auto")
    tasks = [repeating(seq) for seq in range(4)]
    for t in tasks:
        sure(s._pace(t))
    assert s.drafts(tasks, 2048) is None
    assert s.drafts(tasks[:1], 2048) is not None
    assert spec("ngram").drafts(tasks, 2048) is not None
    g = spec("auto", cost=GPU_COST)  # on a GPU all four draft
    for t in tasks:
        sure(g._pace(t))
    assert all(g.drafts(tasks, 2048))


def test_a_task_that_ends_is_forgotten():
    s = spec("auto")
    t = repeating()
    sure(s._pace(t), 1.0)
    assert s.drafts([t], 2048) == [[4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1]]  # a loop
    s.settle(t, 16, 0)
    s.forget(0)
    assert s._pace(t).rate(4) == AUTO_PRIOR
    assert s.describe() == {"mode": "auto", "drafter": "ngram", "max": 16, "drafted": 16,
                            "accepted": 0, "row_cost": {"base": 0.6, "per_row": 0.55}}


def test_a_draft_is_added_with_logits_on_every_row():
    from localgw.engine.batch import Batch

    batch = Batch(8)
    try:
        assert batch.add([5], 10, seq=0, want_logits=True, every_row=True) == 0
        assert batch.add([7, 8, 9], 20, seq=1, want_logits=True, every_row=True) == 3
        assert batch.add([1, 2], 0, seq=2, want_logits=True) == 5
        assert list(batch.logits[:batch.n]) == [1, 1, 1, 1, 0, 1]
        assert list(batch.pos[1:4]) == [20, 21, 22]
    finally:
        batch.close()


def test_a_rate_rests_on_what_was_seen_more_than_on_the_prior():
    from localgw.engine.spec import _Pace

    three, two = _Pace(None), _Pace(None)
    three.observe(FOLLOW, 3, False)
    two.observe(FOLLOW, 2, False)
    assert best_length(three.rate(FOLLOW), 16) > 0 == best_length(two.rate(FOLLOW), 16)
    run = _Pace(None)  # a long run is weighed as a moving average weighs it
    run.observe(FOLLOW, 200, False)
    rate = run.rate(FOLLOW)
    run.observe(FOLLOW, 0, True)
    assert rate > 0.99 and abs(run.rate(FOLLOW) - (1.0 - AUTO_DECAY) * rate) < 1e-3
    assert 0 < best_length(run.rate(FOLLOW), 16) < best_length(rate, 16)  # one miss: shorter
