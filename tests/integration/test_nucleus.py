"""top_p without top_k starts in numpy (engine.sampling): the same nucleus as llama.cpp's top_p,
on the real model's logits."""

import ctypes

import llama_cpp
import numpy as np
import pytest

from localgw.engine.runner import LlamaRunner
from localgw.engine.sampling import TOKEN_DATA, nucleus
from localgw.engine.types import LoadOptions
from tests.helpers import smollm2_path

PROMPT = ("<|im_start|>user\nWrite a long story about a robot who learns to paint.<|im_end|>\n"
          "<|im_start|>assistant\n")


def llama_cpp_top_p(row: np.ndarray, p: float) -> np.ndarray:
    cands = np.empty(row.size, TOKEN_DATA)
    cands["id"], cands["logit"], cands["p"] = np.arange(row.size), row, 0.0
    arr = llama_cpp.llama_token_data_array(cands.ctypes.data_as(llama_cpp.llama_token_data_p),
                                           cands.size, -1, False)
    top_p = llama_cpp.llama_sampler_init_top_p(p, 1)
    try:
        llama_cpp.llama_sampler_apply(top_p, ctypes.byref(arr))
    finally:
        llama_cpp.llama_sampler_free(top_p)
    return cands[:arr.size].copy()


@pytest.fixture(scope="module")
def rows():
    """Logit rows of 48 steps of a story (the most likely token each time), copied out."""
    runner = LlamaRunner("smol", str(smollm2_path()), LoadOptions(n_ctx=512, n_parallel=1))
    try:
        ctx, batch = runner.model.context.ctx, runner.loop.batch
        tokens = runner.tokenize(PROMPT, special=True)
        out, pos = [], 0
        for _ in range(48):
            batch.clear()
            index = batch.add(tokens, pos, 0, True)
            assert batch.decode(ctx) == 0
            pos += len(tokens)
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index),
                                        shape=(runner.n_vocab,)).copy()
            out.append(row)
            tokens = [int(row.argmax())]
        return out
    finally:
        runner.close()


@pytest.mark.parametrize("p", [0.3, 0.9, 0.95, 0.99])
def test_numpy_keeps_the_nucleus_llama_cpps_top_p_keeps(rows, p):
    sizes = []
    for row in rows:
        ours, theirs = nucleus(row, p), llama_cpp_top_p(row, p)
        sizes.append(ours.size)
        assert np.all(np.diff(ours["logit"]) <= 0)            # sorted, most likely first
        assert ours["p"].sum() >= p * 0.999
        common = min(ours.size, theirs.size)
        # the same tokens in the same order (equal logits may swap places)
        assert np.array_equal(ours["logit"][:common], theirs["logit"][:common])
        assert set(ours["id"][:common]) == set(theirs["id"][:common]) or \
            len(set(ours["logit"][:common].tolist())) < common
        np.testing.assert_allclose(ours["p"][:common], theirs["p"][:common], rtol=1e-3, atol=1e-7)
        if ours.size != theirs.size:
            # only the rounding of sums (llama.cpp's runs in float32 over the vocabulary in id
            # order) can move the cut: both sets reach p, and the longer one only at its end
            longer = np.cumsum((ours if ours.size > theirs.size else theirs)["p"], dtype=np.float64)
            assert longer[common - 1] >= p - 5e-4
            assert longer[-2] < p + 5e-4
    assert max(sizes) > 1  # the steps include flat distributions, not only sure tokens


def test_a_nucleus_of_every_size_fits_in_llama_cpps_candidate_array(rows):
    row = rows[0]
    assert nucleus(row, 0.0).size == 1                       # the most likely token alone
    assert nucleus(row, 1e-9)["id"][0] == int(row.argmax())
    everything = nucleus(row, 1.0 - 1e-9)
    assert everything.size > 1000                           # widened past every band of logits
    flat = np.zeros(row.size, np.float32)                   # all equally likely: all are needed
    assert nucleus(flat, 0.999).size >= int(0.998 * row.size)
