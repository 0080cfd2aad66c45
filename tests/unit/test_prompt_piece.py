"""engine.loop.prompt_piece: how a prompt is cut into decode calls."""

from __future__ import annotations

import pytest

from localgw.engine.loop import FINAL_PIECE_MAX, prompt_piece


def pieces(total: int, budget: int, ubatch: int = 512, done: int = 0) -> list[int]:
    out = []
    while done < total:
        n = prompt_piece(done, total, budget, ubatch)
        assert n > 0, (total, budget, done)
        out.append(n)
        done += n
    return out


@pytest.mark.parametrize("total", [2, 5, 40, FINAL_PIECE_MAX])
def test_a_short_prompt_is_one_call(total):
    assert pieces(total, 512) == [total]


def test_a_one_token_prompt_is_one_token():
    assert pieces(1, 512) == [1]


@pytest.mark.parametrize("budget,ubatch", [(512, 512), (128, 512), (2048, 512), (4, 512), (5, 4)])
def test_every_prompt_ends_with_a_piece_of_two_to_final_max_tokens(budget, ubatch):
    for total in range(2, 3000, 13):
        got = pieces(total, budget, ubatch)
        assert sum(got) == total
        assert 2 <= got[-1] <= FINAL_PIECE_MAX, (total, got)
        assert all(n <= budget for n in got), (total, got)
        # a ubatch never ends with a lone token of the prompt
        assert not any(n == 1 or n % ubatch == 1 for n in got), (total, got)


def test_a_warm_prompt_re_reads_only_what_it_must():
    # the slot holds all but the last two tokens (the most any request reuses)
    assert pieces(1000, 512, done=998) == [2]
    assert pieces(1000, 128, done=900) == [98, 2]


def test_no_room_this_step_means_no_piece():
    assert prompt_piece(0, 100, 1, 512) == 0  # one token would be computed as a lone token
    assert prompt_piece(0, 100, 0, 512) == 0
