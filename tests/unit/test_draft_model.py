"""The draft model's choice of a token: the greedy sampler's token, with its probability."""

import numpy as np

from localgw.engine.draft_model import top_choice


def test_the_choice_is_the_first_largest_logit_and_its_softmax_probability():
    row = np.array([0.0, 3.0, 1.0, 3.0], dtype=np.float32)
    token, p = top_choice(row)
    assert token == 1  # the first of equals, as the target's greedy sampler takes
    assert abs(p - np.exp(3.0) / np.exp(row.astype(np.float64)).sum()) < 1e-6


def test_a_sure_row_and_a_flat_row():
    sure = np.full(49152, -20.0, dtype=np.float32)
    sure[7] = 10.0
    assert top_choice(sure)[0] == 7 and top_choice(sure)[1] > 0.99
    flat = np.zeros(49152, dtype=np.float32)
    token, p = top_choice(flat)
    assert token == 0 and abs(p - 1 / 49152) < 1e-9
