"""The numpy repetition penalties give llama.cpp's own penalties sampler's logits, bit for bit."""

import ctypes

import llama_cpp
import numpy as np
import pytest

from localgw.engine.sampling import PENALTY_LAST_N, TOKEN_DATA, Penalties

N_VOCAB = 5000


def llama_penalized(row, history, repeat, frequency, presence):
    sampler = llama_cpp.llama_sampler_init_penalties(N_VOCAB, PENALTY_LAST_N, repeat, frequency,
                                                     presence)
    try:
        for token in history:
            llama_cpp.llama_sampler_accept(sampler, token)
        cands = np.empty(N_VOCAB, TOKEN_DATA)
        cands["id"], cands["logit"], cands["p"] = np.arange(N_VOCAB), row, 0
        arr = llama_cpp.llama_token_data_array(
            cands.ctypes.data_as(llama_cpp.llama_token_data_p), N_VOCAB, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
        return cands["logit"].copy()
    finally:
        llama_cpp.llama_sampler_free(sampler)


@pytest.mark.parametrize("repeat,frequency,presence", [(1.1, 0.0, 0.0), (1.3, 0.5, 0.25),
                                                       (1.0, -0.7, 1.5), (0.8, 2.0, -2.0)])
def test_same_logits_as_llama_cpp(repeat, frequency, presence):
    rng = np.random.default_rng(7)
    penalties = Penalties(PENALTY_LAST_N, repeat, frequency, presence, N_VOCAB)
    history = []
    for step in range(150):  # past the window: tokens leave it again
        row = (rng.standard_normal(N_VOCAB) * 6).astype(np.float32)
        want = llama_penalized(row, history, repeat, frequency, presence)
        got = penalties.apply(row)
        assert np.array_equal(got, want), step
        token = int(rng.integers(0, 40))  # few distinct tokens: many repeats
        penalties.accept(token)
        history.append(token)


def test_the_row_itself_is_left_alone():
    penalties = Penalties(PENALTY_LAST_N, 1.5, 0.0, 0.0, 10)
    row = np.arange(10, dtype=np.float32)
    assert penalties.apply(row) is row  # nothing sampled yet: no copy
    penalties.accept(3)
    out = penalties.apply(row)
    assert row[3] == 3.0 and out[3] == np.float32(3.0) / np.float32(1.5)
