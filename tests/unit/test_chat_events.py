"""Typed chat events: what the pipeline makes of engine events, and the three renderers (OpenAI
chunks, Anthropic Messages, OpenAI Responses) fed one and the same event sequence. No model."""

from __future__ import annotations

import asyncio
import json

from localgw.chat.events import (ChatEvents, ChoiceStart, Finish, ReasoningDelta, TextDelta,
                                 ToolCallDelta, UsageCounts)
from localgw.chat.pipeline import prepare_chat
from localgw.chat.requests import ChatRequest
from localgw.chat.responses import ChatChunker, Usage, collect_chat, read_chunks
from localgw.chat.template import CHATML_TEMPLATE
from localgw.engine.types import ChoiceDone, PromptDone, TokenLogprob, TokenText
from localgw.protocols.anthropic import MessageRenderer
from localgw.protocols.response_events import ResponseRenderer
from localgw.protocols.responses import ResponsesRequest
from tests.helpers import DATA

SEQUENCE = [
    UsageCounts(prompt_tokens=40, cached_tokens=10),
    ChoiceStart(0),
    ReasoningDelta(0, "let me "), ReasoningDelta(0, "think"),
    TextDelta(0, "Sure."), TextDelta(0, ""),
    ToolCallDelta(0, 0, "call_abc", "get_weather"),
    ToolCallDelta(0, 0, arguments='{"city": '), ToolCallDelta(0, 0, arguments='"Oslo"}'),
    UsageCounts(prompt_tokens=40, completion_tokens=9, cached_tokens=10),
    Finish(0, "tool_calls"),
]


async def _listed(iterator):
    return [item async for item in iterator]


async def _replay(events):
    for event in events:
        yield event


def rendered(renderer, events=SEQUENCE) -> list:
    return asyncio.run(_listed(renderer.render(_replay(events))))


def test_one_sequence_renders_as_openai_chunks():
    chunker = ChatChunker("m", include_usage=True, reasoning_fields=("reasoning_content",))
    chunks = rendered(chunker)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": "let me "}
    assert chunks[5]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_abc", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]
    assert chunks[6]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "function": {"arguments": '{"city": '}}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 49
    assert {c["id"] for c in chunks} == {chunker.id}
    body = collect_chat(chunks, Usage(40, 9, 10))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["reasoning_content"] == "let me think"
    assert choice["message"]["content"] == "Sure."
    call = choice["message"]["tool_calls"][0]
    assert (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"])) == (
        "call_abc", "get_weather", {"city": "Oslo"})


def test_one_sequence_renders_as_anthropic_events():
    renderer = MessageRenderer("m")
    events = rendered(renderer)
    assert [name for name, _ in events][:2] == ["message_start", "ping"]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 30  # prompt less the cached
    assert [name for name, _ in events][-2:] == ["message_delta", "message_stop"]
    assert renderer.message["content"] == [
        {"type": "thinking", "thinking": "let me think", "signature": ""},
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {"city": "Oslo"}}]
    assert renderer.message["stop_reason"] == "tool_use"
    assert renderer.message["usage"] == {"input_tokens": 30, "cache_creation_input_tokens": 0,
                                         "cache_read_input_tokens": 10, "output_tokens": 9}


def test_one_sequence_renders_as_responses_events():
    req = ResponsesRequest.model_validate({"model": "m", "input": "hi"})
    renderer = ResponseRenderer(req)
    events = rendered(renderer)
    assert events[0][0] == "response.created" and events[-1][0] == "response.completed"
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    out = renderer.response["output"]
    assert [item["type"] for item in out] == ["reasoning", "message", "function_call"]
    assert out[0]["content"][0]["text"] == "let me think"
    assert out[1]["content"][0]["text"] == "Sure."
    assert (out[2]["call_id"], out[2]["name"], out[2]["arguments"]) == (
        "call_abc", "get_weather", '{"city": "Oslo"}')
    assert renderer.response["usage"]["input_tokens"] == 40
    assert renderer.response["usage"]["output_tokens"] == 9


def test_renderers_of_one_choice_leave_the_others_out():
    other = [ChoiceStart(1), TextDelta(1, "other"), Finish(1, "stop")]
    anthropic = MessageRenderer("m")
    rendered(anthropic, [ChoiceStart(0), TextDelta(0, "mine"), *other, Finish(0, "length")])
    assert anthropic.message["content"] == [{"type": "text", "text": "mine"}]
    assert anthropic.message["stop_reason"] == "max_tokens"


def _prepared(template: str = CHATML_TEMPLATE, tools: bool = False):
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    if tools:
        body["tools"] = [{"type": "function", "function": {
            "name": "get_weather", "description": "w", "parameters": {"type": "object"}}}]
    return prepare_chat(ChatRequest.model_validate(body), template, factory=None)


def test_engine_events_become_chat_events():
    usage = Usage()
    events = ChatEvents(_prepared().new_output, usage)
    lp = TokenLogprob("Hi", -0.1, [72, 105], [])
    assert events.on_event(PromptDone(12, 4)) == [UsageCounts(12, 0, 4)]
    assert events.on_event(TokenText(0, "Hi", lp)) == [ChoiceStart(0), TextDelta(0, "Hi", lp)]
    assert events.on_event(TokenText(0, "", lp)) == [TextDelta(0, "", lp)]  # its logprob goes out
    assert events.on_event(TokenText(0, "")) == []
    assert events.on_event(ChoiceDone(0, "stop", 3, "END")) == [UsageCounts(12, 3, 4),
                                                               Finish(0, "stop", "END")]
    # a choice that finishes with no token opens first; counts add up over choices
    assert events.on_event(ChoiceDone(1, "length", 2)) == [UsageCounts(12, 5, 4), ChoiceStart(1),
                                                           Finish(1, "length")]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (12, 5, 4)


def test_a_tool_call_reply_finishes_as_tool_calls():
    template = (DATA / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    events = ChatEvents(_prepared(template, tools=True).new_output, Usage())
    out = events.on_event(TokenText(0, '<tool_call>\n{"name": "get_weather", "arguments": {}}'))
    out += events.on_event(TokenText(0, "\n</tool_call>"))
    out += events.on_event(ChoiceDone(0, "stop", 2))
    starts = [e for e in out if isinstance(e, ToolCallDelta) and e.id is not None]
    assert [(e.call, e.name) for e in starts] == [(0, "get_weather")]
    assert out[-1] == Finish(0, "tool_calls")


def test_upstream_chunks_read_as_the_same_events():
    usage = Usage()

    async def upstream():
        yield {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        yield {"choices": [{"index": 0, "delta": {"reasoning": "r", "content": "a"}}]}
        yield {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}}]}
        usage.prompt_tokens, usage.completion_tokens = 7, 3  # its reader counted the usage
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                            "stop_reason": "END"}]}

    got = asyncio.run(_listed(read_chunks(upstream(), usage)))
    assert got == [ChoiceStart(0), ReasoningDelta(0, "r"), TextDelta(0, "a"),
                   ToolCallDelta(0, 0, "call_1", "f", "{}"), UsageCounts(7, 3, 0),
                   Finish(0, "stop", "END")]
