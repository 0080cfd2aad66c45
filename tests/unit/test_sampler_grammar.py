"""A grammar checks the chain's pick first, and filters the row only when it refuses it
(engine.sampling): the result is a token the grammar allows, the greedy one among those, and
a grammar that allows nothing fails the request instead of the process."""

from types import SimpleNamespace

import numpy as np
import pytest

from localgw.engine.sampling import Sampler
from localgw.engine.types import SamplingParams
from localgw.errors import InvalidRequest

DIGITS = 'root ::= [0-9] [0-9] [0-9] [0-9] [0-9] [0-9]'


def _allowed(engine, smpl, n_vocab):
    """Ids the grammar sampler allows next (by llama.cpp's own apply on every token)."""
    import ctypes

    import llama_cpp

    from localgw.engine.sampling import TOKEN_DATA
    cands = np.zeros(n_vocab, TOKEN_DATA)
    cands["id"] = np.arange(n_vocab)
    arr = llama_cpp.llama_token_data_array(cands.ctypes.data_as(llama_cpp.llama_token_data_p),
                                           n_vocab, -1, False)
    llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
    return np.isfinite(cands["logit"])


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_every_pick_is_allowed_and_greedy_picks_the_best_allowed(engine, temperature):
    import llama_cpp

    n_vocab = llama_cpp.llama_vocab_n_tokens(engine.vocab)
    model = SimpleNamespace(vocab=engine.vocab)
    params = SamplingParams(temperature=temperature, top_p=0.9, top_k=0, grammar=DIGITS,
                            repeat_penalty=1.1)
    sampler = Sampler(params, 7, model, n_vocab)
    mirror = engine.sampler(DIGITS)  # the same grammar, advanced with the same tokens
    rng = np.random.default_rng(3)
    try:
        for _ in range(6):
            row = (rng.standard_normal(n_vocab) * 4).astype(np.float32)
            allowed = _allowed(engine, mirror, n_vocab)
            best = int(np.where(allowed, sampler.penalties.apply(row), -np.inf).argmax())
            token = sampler.sample(None, 0, row)
            assert allowed[token]
            if temperature == 0.0:
                assert token == best
            llama_cpp.llama_sampler_accept(mirror, token)
    finally:
        sampler.close()
        llama_cpp.llama_sampler_free(mirror)


def test_an_allowed_first_pick_is_kept_without_filtering(engine, monkeypatch):
    import llama_cpp

    n_vocab = llama_cpp.llama_vocab_n_tokens(engine.vocab)
    sampler = Sampler(SamplingParams(temperature=0.0, grammar=DIGITS),
                      1, SimpleNamespace(vocab=engine.vocab), n_vocab)
    seven = engine.tokens("7")[0]
    row = np.zeros(n_vocab, np.float32)
    row[seven] = 5.0
    monkeypatch.setattr(sampler, "_grammar_row", lambda row: pytest.fail("filtered the row"))
    try:
        assert sampler.sample(None, 0, row) == seven
    finally:
        sampler.close()


def test_a_grammar_that_allows_no_token_fails_the_request(engine):
    import llama_cpp

    n_vocab = llama_cpp.llama_vocab_n_tokens(engine.vocab)
    sampler = Sampler(SamplingParams(temperature=0.0, grammar=DIGITS),
                      1, SimpleNamespace(vocab=engine.vocab), n_vocab)
    try:
        with pytest.raises(InvalidRequest):
            sampler._pick(sampler._grammar_row(np.full(n_vocab, -np.inf, np.float32)))
    finally:
        sampler.close()
