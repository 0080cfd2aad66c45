"""Fail-fast limits: each is a 400 naming the limit and the value, checked before expensive work."""

from __future__ import annotations

import json
import threading
import time

import pytest

from localgw.chat.requests import ChatRequest, CompletionRequest, parse_body
from localgw.errors import ContextLengthExceeded, InvalidRequest
from localgw.server.limits import (Cancelled, Limits, PreparePool, _pieces, bounded_prompt_tokens,
                                   check_prompt_chars, json_depth,
                                   longest_token_chars)

LIMITS = Limits()


def chat(**extra) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return json.dumps(body).encode()


def refused(body: bytes, model=ChatRequest, limits=LIMITS) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_body(model, body, limits)
    return info.value


def test_a_deeply_nested_body_is_a_400_naming_the_limit_not_a_recursion_error():
    deep = b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "x": ' + \
        b"[" * 5000 + b"]" * 5000 + b"}"
    err = refused(deep)
    assert err.status == 400 and "max_depth" in err.message and "64" in err.message


def test_nesting_past_the_limit_but_within_the_parser_is_refused_too():
    err = refused(chat(chat_template_kwargs={"a": json.loads("[" * 70 + "]" * 70)}))
    assert "nesting depth" in err.message and "more than 64" in err.message


def test_stop_over_16_says_the_limit_is_16():
    err = refused(chat(stop=["x"] * 1000))
    assert err.param == "stop" and "16" in err.message and "1000" in err.message


def test_too_many_messages_is_refused_before_validation():
    body = chat(messages=[{"role": "user", "content": "w"}] * 5000)
    err = refused(body)
    assert err.param == "messages" and "5000" in err.message and "4096" in err.message
    assert "max_messages" in err.message
    assert parse_body(ChatRequest, body, Limits(max_messages=5000)).messages


def test_too_many_prompts_and_tools():
    err = refused(json.dumps({"model": "m", "prompt": ["a"] * 300}).encode(), CompletionRequest)
    assert "max_prompts" in err.message and "300" in err.message
    tool = {"type": "function", "function": {"name": "f"}}
    err = refused(chat(tools=[tool] * 300))
    assert "max_tools" in err.message and "300" in err.message


def test_schema_size_and_enum_size_are_bounded():
    big = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(20)}}
    req = parse_body(ChatRequest, chat(response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": big}}), LIMITS)
    with pytest.raises(InvalidRequest) as info:
        Limits(max_schema_nodes=10).check_chat(req)
    assert "max_schema_nodes" in info.value.message
    assert info.value.param == "response_format.json_schema.schema"
    enum = {"type": "string", "enum": [str(i) for i in range(2000)]}
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": enum}}}}
    req = parse_body(ChatRequest, chat(tools=[tool]), LIMITS)
    with pytest.raises(InvalidRequest) as info:
        LIMITS.check_chat(req)
    assert "max_enum" in info.value.message and "2000" in info.value.message
    assert info.value.param == "tools[0].function.parameters"


def test_overrides_parse_and_reject_nonsense():
    assert Limits().with_overrides(["max_messages=10_000", "max-depth=100"]) == \
        Limits(max_messages=10000, max_depth=100)
    for bad in (["nope=1"], ["max_depth"], ["max_depth=x"], ["max_depth=0"]):
        with pytest.raises(ValueError):
            Limits().with_overrides(bad)


def test_json_depth_is_iterative():
    assert json_depth(1) == 0 and json_depth([]) == 1 and json_depth({"a": [{}]}) == 3
    deep: list = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    assert json_depth(deep, stop_at=65) == 65


class FakeRunner:
    n_ctx = 100
    n_vocab = 3

    def token_text(self, i: int) -> str:
        return ["a", "abcd", "<|im_start|>"][i]


def test_character_bound_refuses_what_cannot_fit_whatever_the_tokenizer_does():
    runner = FakeRunner()
    assert longest_token_chars(runner) == 12
    check_prompt_chars(["x" * 1000], runner)  # 1000 / 12 < 100 tokens: could fit, so let through
    with pytest.raises(ContextLengthExceeded) as info:
        check_prompt_chars(["x" * 600, "y" * 600], runner)
    assert "1200 characters" in info.value.message and "100 tokens" in info.value.message
    # no vocabulary to measure: no bound, so nothing is refused here
    check_prompt_chars(["x" * 10**6], type("Opaque", (), {"n_ctx": 100, "n_vocab": 0})())


async def test_pool_stops_work_between_steps_when_the_caller_is_cancelled():
    import asyncio
    pool = PreparePool(1)
    started, finished = threading.Event(), []

    def steps(stop):
        started.set()
        for i in range(100):
            time.sleep(0.02)
            if stop.is_set():
                raise Cancelled()
            finished.append(i)

    task = asyncio.ensure_future(pool.run(steps))
    await asyncio.to_thread(started.wait)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The thread stops at its next step, and the pool takes new work at once.
    assert await asyncio.wait_for(pool.run(lambda stop: "next"), 2) == "next"
    assert len(finished) < 20
    pool.close()


class WordRunner:
    """Tokenizes by words: enough to show the early refusal and the exact count."""

    n_ctx = 1000
    bos_text = ""  # no start-of-text token

    def __init__(self):
        self.calls = []

    def tokenize(self, text: str) -> list[int]:
        self.calls.append(len(text))
        return [0] * len(text.split())

    def prompt_tokens(self, text: str) -> list[int]:
        return self.tokenize(text)


def test_pieces_cut_before_a_line_and_lose_nothing():
    text = "".join(f"line {i}\n" for i in range(20_000))
    pieces = _pieces(text, 1000)
    assert "".join(pieces) == text and len(pieces) > 100
    assert all(p.endswith("\n") for p in pieces[:-1])
    assert "".join(_pieces("x" * 5000, 1000)) == "x" * 5000


def test_a_long_prompt_is_refused_after_counting_only_part_of_it():
    runner = WordRunner()
    prompt = "w\n" * 2_000_000
    with pytest.raises(ContextLengthExceeded) as info:
        bounded_prompt_tokens(runner, prompt)
    assert "at least" in info.value.message
    assert sum(runner.calls) < len(prompt) / 10  # stopped early, never tokenized it whole
    fits = "w\n" * 400
    assert len(bounded_prompt_tokens(WordRunner(), fits)) == 400


def test_an_empty_prompt_starts_from_the_bos_token_or_is_a_400():
    class Bos(WordRunner):
        bos_text = "<s>"
    assert bounded_prompt_tokens(Bos(), "") == [0]
    with pytest.raises(InvalidRequest) as info:
        bounded_prompt_tokens(WordRunner(), "", param="prompt")
    assert info.value.param == "prompt" and "empty" in info.value.message


def test_a_lone_surrogate_escape_is_a_400_not_a_500():
    # Found by the fuzz test: json.loads accepts "\udaec", pydantic does not, and the error's
    # input (bytes) then broke the message.
    err = refused(b'{"model": "m", "messages": [{"role": "user", "content": "\\udaec"}]}')
    assert err.status == 400 and "not valid JSON" in err.message


async def test_pool_runs_small_work_inline_on_the_callers_thread():
    pool = PreparePool(1)
    try:
        here = threading.get_ident()
        assert await pool.run(lambda stop: threading.get_ident(), inline=True) == here
        assert await pool.run(lambda stop: threading.get_ident()) != here
    finally:
        pool.close()


def test_only_small_chats_without_grammars_are_prepared_inline():
    from localgw.chat.requests import ChatRequest
    from localgw.server.service import _small_chat

    def req(text, **extra):
        return ChatRequest.model_validate({"model": "m", "messages": [
            {"role": "user", "content": text}], **extra})
    assert _small_chat(req("hello"))
    assert not _small_chat(req("x" * 5000))
    assert not _small_chat(req("hello", response_format={"type": "json_object"}))
    assert not _small_chat(req("hello", tools=[{"type": "function", "function": {"name": "f"}}]))
