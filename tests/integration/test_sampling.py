"""Every sampling field does what the OpenAI API says, on the real model."""

import json

from localgw.gguf import read_gguf
from tests.helpers import smollm2_path

from tests.integration.conftest import EOS_BAN, MODEL_ID, chat_body


def ask(http, **body):
    resp = http.post("/v1/chat/completions", json=chat_body(**body))
    assert resp.status_code == 200, resp.text
    return resp.json()


def text_of(resp, i=0):
    return resp["choices"][i]["message"]["content"]


def test_seed_makes_sampling_repeatable(http):
    a = ask(http, content="Write a short poem.", temperature=0.9, seed=42, max_tokens=24)
    b = ask(http, content="Write a short poem.", temperature=0.9, seed=42, max_tokens=24)
    c = ask(http, content="Write a short poem.", temperature=0.9, seed=7, max_tokens=24)
    assert text_of(a) == text_of(b)
    assert text_of(a) != text_of(c)


def test_stop_strings_never_appear(http):
    base = text_of(ask(http, content="Tell me about the sea.", max_tokens=40, logit_bias=EOS_BAN))
    words = base.split()
    assert len(words) > 6
    stop = words[4][1:3] if len(words[4]) > 3 else words[4]   # often cuts through a token
    resp = ask(http, content="Tell me about the sea.", max_tokens=40, stop=[stop, "zzqx"],
               logit_bias=EOS_BAN)
    out = text_of(resp)
    assert stop not in out
    assert base.startswith(out) and len(out) < len(base)
    assert resp["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_gives_length(http):
    resp = ask(http, content="Tell me a long story.", max_tokens=5, logit_bias=EOS_BAN)
    assert resp["choices"][0]["finish_reason"] == "length"
    assert resp["usage"]["completion_tokens"] <= 5
    resp = ask(http, content="Tell me a long story.", max_completion_tokens=3, logit_bias=EOS_BAN)
    assert resp["usage"]["completion_tokens"] == 3


def test_n_gives_separate_choices(http):
    resp = ask(http, content="Name a colour.", n=2, temperature=1.0, seed=3, max_tokens=8)
    assert [c["index"] for c in resp["choices"]] == [0, 1]
    assert all(c["message"]["content"] for c in resp["choices"])


def test_logprobs_have_the_openai_shape(http):
    resp = ask(http, content="Hi", logprobs=True, top_logprobs=3, max_tokens=4)
    content = resp["choices"][0]["logprobs"]["content"]
    assert len(content) == resp["usage"]["completion_tokens"]
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["logprob"] <= 0 and isinstance(entry["bytes"], list)
        assert len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][-1]["logprob"]
        # greedy: the chosen token is the most likely one
        assert abs(entry["logprob"] - entry["top_logprobs"][0]["logprob"]) < 1e-4
    assert "".join(e["token"] for e in content) == text_of(resp)


def test_include_usage_adds_a_usage_chunk(http):
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        frames = [json.loads(line[6:]) for line in resp.iter_lines()
                  if line.startswith("data: {")]
    assert frames[-1]["choices"] == [] and frames[-1]["usage"]["total_tokens"] > 0
    assert frames[-2]["choices"][0]["finish_reason"] is not None


def test_logit_bias_and_top_k(http):
    greedy = ask(http, content="Hi", max_tokens=1, logprobs=True)
    first = greedy["choices"][0]["logprobs"]["content"][0]["token"]
    top1 = ask(http, content="Hi", max_tokens=1, temperature=1.5, top_k=1, seed=5)
    assert text_of(top1) == text_of(greedy)
    # ban the greedy token (looked up in the GGUF vocabulary): the answer must change
    vocab = read_gguf(smollm2_path()).metadata["tokenizer.ggml.tokens"]
    token_id = vocab.index(first.replace(" ", "\u0120"))
    banned = ask(http, content="Hi", max_tokens=1, logit_bias={str(token_id): -100})
    assert text_of(banned) != first
    forced = ask(http, content="Hi", max_tokens=1, logit_bias={str(vocab.index("Paris")): 100})
    assert text_of(forced) == "Paris"


def test_penalties_and_min_p_are_accepted_and_change_output(http):
    plain = text_of(ask(http, content="Repeat: la la la la la la", max_tokens=30))
    penal = text_of(ask(http, content="Repeat: la la la la la la", max_tokens=30,
                        frequency_penalty=2.0, presence_penalty=2.0, repetition_penalty=1.5))
    assert plain != penal
    ask(http, content="Hi", min_p=0.2, top_p=0.5, temperature=0.7, max_tokens=3)


def test_completion_logprobs_shape(http):
    resp = http.post("/v1/completions", json={"model": MODEL_ID, "prompt": "Once upon a",
                                              "max_tokens": 3, "temperature": 0, "logprobs": 2})
    lp = resp.json()["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 3
    assert all(len(t) <= 2 for t in lp["top_logprobs"])
    assert lp["text_offset"][0] == 0


def test_temperature_zero_picks_what_llama_cpps_own_sampler_picks(http):
    # temperature 0 alone takes the largest logit in numpy (engine.runner: a greedy chain alone); top_k 1
    # at temperature 0.8 goes through llama.cpp's sampler chain, which can only pick that token
    for content in ("Name three colours.", "What is a river?", "Count from one to ten."):
        fast = ask(http, content=content, temperature=0, max_tokens=32)
        chain = ask(http, content=content, temperature=0.8, top_k=1, seed=3, max_tokens=32)
        assert text_of(fast) == text_of(chain)
        assert fast["usage"]["completion_tokens"] == chain["usage"]["completion_tokens"]


def test_a_tiny_top_p_keeps_only_the_most_likely_token(http):
    # top_p without top_k (SmolLM2's own default) finds its nucleus in numpy (engine.sampling);
    # below 1/49152 it holds the most likely token alone, whatever the temperature
    for content in ("Name three colours.", "What is a river?"):
        greedy = ask(http, content=content, temperature=0, max_tokens=24)
        tiny = ask(http, content=content, temperature=1.5, top_p=1e-6, seed=11, max_tokens=24)
        assert text_of(tiny) == text_of(greedy)
