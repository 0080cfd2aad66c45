"""Anthropic Messages: request translation, chunk → event rendering, error shape. No model."""

import json

import pytest

from localgw.chat.requests import parse_body
from localgw.chat.events import ChatEvents
from localgw.chat.responses import ChatChunker, Usage
from localgw.engine.stops import StopMatcher
from localgw.engine.types import ChoiceDone, PromptDone, TokenText
from localgw.errors import (AuthenticationError, InvalidRequest, LocalgwError, ModelNotFound,
                            QueueFull, RequestTooLarge, ServiceUnavailable)
from localgw.protocols.anthropic import MessageRenderer, MessagesRequest, error_body
from tests.helpers import render_chunk

TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}


def request(**extra) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return parse_body(MessagesRequest, json.dumps(body | extra).encode())


@pytest.mark.parametrize("choice, chat_choice", [
    ({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "get_weather"},
     {"type": "function", "function": {"name": "get_weather"}})])
def test_tool_choice_maps_onto_openai_choices(choice, chat_choice):
    chat = request(tools=[TOOL], tool_choice=choice).to_chat()
    got = chat.tool_choice if isinstance(chat.tool_choice, str) else chat.tool_choice.model_dump()
    assert got == chat_choice
    assert chat.parallel_tool_calls


def test_fields_map_onto_the_chat_request():
    chat = request(system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                   stop_sequences=["END"], temperature=0.5, top_p=0.9, top_k=5,
                   thinking={"type": "disabled"}, metadata={"user_id": "u"},
                   tools=[TOOL, {"type": "web_search_20250305", "name": "web_search"}],
                   tool_choice={"type": "any", "disable_parallel_tool_use": True}).to_chat()
    assert chat.messages[0].role == "system" and chat.messages[0].content == "a\n\nb"
    assert chat.stop == ["END"] and chat.max_tokens == 8 and chat.top_k == 5
    assert chat.temperature == 0.5 and chat.top_p == 0.9
    assert chat.chat_template_kwargs == {"enable_thinking": False}
    assert [t.function.name for t in chat.tools] == ["get_weather"]  # server tools left out
    assert chat.parallel_tool_calls is False


def test_blocks_map_onto_chat_messages():
    chat = request(messages=[
        {"role": "user", "content": [{"type": "text", "text": "q1"}, {"type": "text", "text": "q2"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "21C"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no city given",
             "is_error": True, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "and tomorrow?"}]},
    ], tools=[TOOL]).to_chat()
    roles = [m.role for m in chat.messages]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    user, assistant, r1, r2, last = chat.messages
    assert user.content == "q1\n\nq2"
    assert assistant.content is None and assistant.reasoning_content == "hmm"
    assert [(c.id, c.function.arguments) for c in assistant.tool_calls] == [
        ("toolu_1", {"city": "Oslo"}), ("toolu_2", {})]
    assert (r1.tool_call_id, r1.content) == ("toolu_1", "sunny\n\n21C")
    assert (r2.tool_call_id, r2.content) == ("toolu_2", "no city given")
    assert last.content == "and tomorrow?"


def test_what_claude_code_sends_is_taken():
    """System turns inside `messages`, adaptive thinking, output_config, context_management, and
    the per-request billing line opening its system prompt (dropped: it would defeat the cache)."""
    chat = request(
        system=[{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.abc; "
                                         "cc_entrypoint=cli; cch=1f2e3;"},
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"},
                  {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
                  {"role": "user", "content": "again"}],
        thinking={"type": "adaptive"}, output_config={"effort": "high"},
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
        metadata={"user_id": "u"}).to_chat()
    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "You are Claude Code."), ("user", "hi"), ("system", "Be terse."),
        ("user", "again")]
    assert chat.chat_template_kwargs == {"enable_thinking": True}


def test_a_system_turn_holds_text_only():
    with pytest.raises(InvalidRequest) as err:
        request(messages=[{"role": "system", "content": [
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]).to_chat()
    assert "system" in err.value.message and err.value.param == "messages[0].content"


@pytest.mark.parametrize("body, words", [
    ({"max_tokens": None}, ["max_tokens"]),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, ["image"]),
    ({"messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "x", "name": "f", "input": {}}]}]}, ["user", "tool_use"]),
    ({"temperature": 1.5}, ["temperature"]),
    ({"tool_choice": {"type": "tool"}}, ["name"]),
])
def test_bad_requests_are_400s_that_say_what_is_wrong(body, words):
    base = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    full = {k: v for k, v in (base | body).items() if v is not None}
    with pytest.raises(InvalidRequest) as err:
        parse_body(MessagesRequest, json.dumps(full).encode()).to_chat()
    for word in words:
        assert word in err.value.message


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
     "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": {}, "text": "hi"}]}]},
     "messages[0].content[0]"),
    ({"tool_choice": {"type": "tool", "name": 1}}, "tool_choice.name"),
])
def test_a_bad_value_inside_a_block_names_its_field(body, param):
    base = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(InvalidRequest) as err:
        parse_body(MessagesRequest, json.dumps(base | body).encode())
    assert err.value.param == param


HOSTILE_TAGS = [{}, [], ["text"], {"type": "text"}, 0, 1.5, True]  # null is "absent" for some


def hostile_bodies():
    """A body with each discriminator (block/role/choice/thinking type) set to a non-string."""
    def block(**b):
        return {"messages": [{"role": "user", "content": [b]}]}
    for tag in HOSTILE_TAGS:
        yield block(type=tag, data="")
        yield block(type=tag, text="hi")
        yield block(type="tool_result", tool_use_id="t", content=[{"type": tag, "text": "r"}])
        yield {"messages": [{"role": tag, "content": "hi"}]}
        yield {"messages": [{"role": "assistant", "content": [{"type": tag, "thinking": "h"}]}]}
        yield {"system": [{"type": tag, "text": "s"}]}
        yield {"tool_choice": {"type": tag, "name": "get_weather"}, "tools": [TOOL]}
        yield {"tool_choice": tag}
        yield {"thinking": {"type": tag}}
        yield {"tools": [{**TOOL, "type": tag}]}


@pytest.mark.parametrize("body", list(hostile_bodies()), ids=lambda b: json.dumps(b)[:60])
def test_a_non_string_tag_is_a_400_not_a_crash(body):
    base = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(InvalidRequest):
        parse_body(MessagesRequest, json.dumps(base | body).encode()).to_chat()


def chunk(delta=None, finish=None, **choice):
    return {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish, **choice}]}


def test_renderer_streams_thinking_text_and_tool_use_blocks():
    usage = Usage(prompt_tokens=50, cached_tokens=30)
    r = MessageRenderer("m", usage)
    chunks = [chunk({"role": "assistant", "content": ""}),
              chunk({"reasoning_content": "let me ", "reasoning": "let me "}),
              chunk({"reasoning_content": "think"}),
              chunk({"content": "Sure."}),
              chunk({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
                                     "function": {"name": "f", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})]
    events = [e for c in chunks for e in render_chunk(r, c)]
    usage.completion_tokens = 7
    events += render_chunk(r, chunk(finish="tool_calls"))
    names = [name for name, _ in events]
    assert names == ["message_start", "ping",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] == 20
    assert start["usage"]["cache_read_input_tokens"] == 30
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert deltas[0] == {"type": "thinking_delta", "thinking": "let me "}
    assert deltas[2] == {"type": "text_delta", "text": "Sure."}
    assert deltas[3] == {"type": "input_json_delta", "partial_json": '{"a": '}
    tool_start = events[9][1]["content_block"]
    assert tool_start == {"type": "tool_use", "id": "toolu_abc", "name": "f", "input": {}}
    assert [d["index"] for n, d in events if n.startswith("content_block")] == [0] * 4 + [1] * 3 + [2] * 4
    msg = r.message
    assert msg["content"] == [{"type": "thinking", "thinking": "let me think", "signature": ""},
                              {"type": "text", "text": "Sure."},
                              {"type": "tool_use", "id": "toolu_abc", "name": "f",
                               "input": {"a": 1}}]
    assert msg["stop_reason"] == "tool_use" and msg["stop_sequence"] is None
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert msg["usage"] == {"input_tokens": 20, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 30, "output_tokens": 7}


@pytest.mark.parametrize("finish, extra, reason, sequence", [
    ("stop", {}, "end_turn", None), ("length", {}, "max_tokens", None),
    ("stop", {"stop_reason": "END"}, "stop_sequence", "END")])
def test_stop_reasons(finish, extra, reason, sequence):
    r = MessageRenderer("m", Usage())
    render_chunk(r, chunk({"content": "x"}))
    render_chunk(r, chunk(finish=finish, **extra))
    assert (r.message["stop_reason"], r.message["stop_sequence"]) == (reason, sequence)


def test_chat_chunks_carry_the_matched_stop_string_only_when_one_matched():
    matcher = StopMatcher(["END", "STOP"])
    assert matcher.feed("abc ST") == "abc " and matcher.feed("OP and END") == ""
    assert matcher.matched == "STOP"
    from localgw.chat.pipeline import prepare_chat
    from localgw.chat.requests import ChatRequest
    from localgw.chat.template import CHATML_TEMPLATE
    req = parse_body(ChatRequest, b'{"model":"m","messages":[{"role":"user","content":"x"}]}')
    prepared = prepare_chat(req, CHATML_TEMPLATE, factory=None)
    for stop, present in ((None, False), ("END", True)):
        events, chunker = ChatEvents(prepared.new_output, Usage()), ChatChunker(model="m")
        events.on_event(PromptDone(3, 0))
        events.on_event(TokenText(0, "hi"))
        last = chunker.chunk(events.on_event(ChoiceDone(0, "stop", 1, stop))[-1])["choices"][0]
        assert ("stop_reason" in last) is present and last["finish_reason"] == "stop"


@pytest.mark.parametrize("exc, kind", [
    (InvalidRequest("x"), "invalid_request_error"), (AuthenticationError("x"), "authentication_error"),
    (ModelNotFound("x"), "not_found_error"), (RequestTooLarge("x"), "request_too_large"),
    (QueueFull("x"), "rate_limit_error"), (LocalgwError("x"), "api_error"),
    (ServiceUnavailable("x"), "overloaded_error")])
def test_error_shape(exc, kind):
    assert error_body(exc) == {"type": "error", "error": {"type": kind, "message": "x"}}
