"""OpenAI Responses: item translation, chunk → event rendering, the stored responses. No model."""

import json

import pytest

from localgw.chat.requests import parse_body
from localgw.chat.responses import Usage
from localgw.errors import InvalidRequest
from localgw.protocols.response_events import ResponseRenderer
from localgw.protocols.responses import ResponsesRequest, ResponseStore
from tests.helpers import render_chunk


def request(**extra) -> ResponsesRequest:
    return parse_body(ResponsesRequest, json.dumps({"model": "m", "input": "hi"} | extra).encode())


def chat(req: ResponsesRequest):
    return req.to_chat(req.input_items())


def test_string_input_instructions_and_settings():
    c = chat(request(instructions="be brief", max_output_tokens=9, temperature=0, top_p=0.5,
                     text={"format": {"type": "json_schema", "name": "p",
                                      "schema": {"type": "object"}, "strict": True}},
                     tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}},
                            {"type": "web_search"}],
                     tool_choice={"type": "function", "name": "f"}, parallel_tool_calls=False))
    assert [(m.role, m.content) for m in c.messages] == [("system", "be brief"), ("user", "hi")]
    assert c.max_tokens == 9 and c.temperature == 0 and c.top_p == 0.5
    assert c.response_format.type == "json_schema"
    assert c.response_format.json_schema.schema_ == {"type": "object"}
    assert [t.function.name for t in c.tools] == ["f"]
    assert c.tool_choice.function.name == "f" and c.parallel_tool_calls is False
    assert chat(request(text={"format": {"type": "json_object"}})).response_format.type == \
        "json_object"
    assert chat(request(reasoning={"effort": "none"})).chat_template_kwargs == {
        "enable_thinking": False}


def test_items_group_into_chat_turns():
    c = chat(request(input=[
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                        {"type": "input_text", "text": "b"}]},
        {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "plan"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": '{"x": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "error: no x"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "done", "annotations": []}]},
        {"type": "function_call", "call_id": "c3", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c3", "output": "three"}]))
    assert [m.role for m in c.messages] == ["developer", "user", "assistant", "tool", "tool",
                                            "assistant", "tool"]
    assert c.messages[1].content == "a\n\nb"
    first = c.messages[2]
    assert first.content is None and first.reasoning_content == "plan"
    assert [call.id for call in first.tool_calls] == ["c1", "c2"]
    assert c.messages[4].content == "error: no x"
    assert c.messages[5].content == "done" and c.messages[5].tool_calls[0].id == "c3"


def test_unsupported_items_and_unnamed_function_tools_are_400s():
    with pytest.raises(InvalidRequest, match="unsupported input item"):
        request(input=[{"type": "computer_call", "id": "x"}])
    with pytest.raises(InvalidRequest, match="name"):
        chat(request(tools=[{"type": "function"}]))
    with pytest.raises(InvalidRequest, match="'input' is empty"):
        chat(request(input=[]))


@pytest.mark.parametrize("body, param", [
    ({"input": [{"type": "function_call", "call_id": 1, "name": "f", "arguments": "{}"}]},
     "input[0].call_id"),
    ({"input": [{"type": {}}]}, "input[0]"),
    ({"tool_choice": {"type": "function", "name": 1}}, "tool_choice.name"),
])
def test_a_bad_value_inside_an_item_names_its_field(body, param):
    with pytest.raises(InvalidRequest) as err:
        request(**body)
    assert err.value.param == param


HOSTILE_TAGS = [{}, [], ["message"], {"type": "message"}, 0, 1.5, True]  # null is "absent" for some


def hostile_bodies():
    """A body with each discriminator (item/part/role/format/choice type) set to a non-string."""
    for tag in HOSTILE_TAGS:
        yield {"input": [{"type": tag, "role": "user", "content": "hi"}]}
        yield {"input": [{"role": tag, "content": "hi"}]}
        yield {"input": [{"role": "user", "content": [{"type": tag, "text": "hi"}]}]}
        yield {"input": [{"type": "reasoning", "summary": [{"type": tag, "text": "s"}]}]}
        yield {"input": [{"type": "function_call_output", "call_id": "c",
                          "output": [{"type": tag, "text": "o"}]}]}
        yield {"input": [tag]}
        yield {"text": {"format": {"type": tag}}}
        yield {"text": {"format": tag}}
        yield {"tool_choice": {"type": tag, "name": "f"}}
        yield {"tools": [{"type": tag, "name": "f"}]}
        yield {"reasoning": {"effort": tag}}


@pytest.mark.parametrize("body", list(hostile_bodies()), ids=lambda b: json.dumps(b)[:60])
def test_a_non_string_tag_is_a_400_not_a_crash(body):
    with pytest.raises(InvalidRequest):
        chat(request(**body))


def chunk(delta=None, finish=None):
    return {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}


def test_renderer_events_and_the_collected_response():
    usage = Usage(prompt_tokens=40, cached_tokens=10)
    done = []
    r = ResponseRenderer(request(), usage, on_done=done.append)
    chunks = [chunk({"role": "assistant", "content": ""}),
              chunk({"reasoning_content": "hm", "reasoning": "hm"}),
              chunk({"content": "Hi"}), chunk({"content": "!"}),
              chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "f", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})]
    events = [e for c in chunks for e in render_chunk(r, c)]
    usage.completion_tokens = 5
    events += render_chunk(r, chunk(finish="tool_calls"))
    names = [n for n, _ in events]
    assert names == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert all(n == d["type"] for n, d in events)
    resp = r.response
    assert done == [resp] and resp["status"] == "completed" and resp["id"].startswith("resp_")
    assert [i["type"] for i in resp["output"]] == ["reasoning", "message", "function_call"]
    assert resp["output"][1]["content"][0]["text"] == "Hi!"
    assert resp["output"][2] | {"id": None} == {"type": "function_call", "id": None,
                                                "call_id": "call_1", "name": "f",
                                                "arguments": "{}", "status": "completed"}
    assert resp["usage"]["input_tokens"] == 40 and resp["usage"]["output_tokens"] == 5
    assert resp["usage"]["input_tokens_details"] == {"cached_tokens": 10}
    assert events[0][1]["response"]["output"] == [] and events[0][1]["response"]["status"] == \
        "in_progress"


def test_a_reply_cut_by_the_limit_is_incomplete():
    r = ResponseRenderer(request(max_output_tokens=2), Usage())
    render_chunk(r, chunk({"content": "abc"}))
    events = render_chunk(r, chunk(finish="length"))
    assert events[-1][0] == "response.incomplete"
    assert r.response["status"] == "incomplete"
    assert r.response["incomplete_details"] == {"reason": "max_output_tokens"}


def test_store_keeps_conversations_bounded_and_store_false_keeps_nothing():
    store = ResponseStore(max_entries=2)
    req = request()
    out = {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
           "content": [{"type": "output_text", "text": "yo", "annotations": []}]}
    for name in ("a", "b"):
        store.save({"id": name, "output": [out]}, req.input_items(), store=True)
    assert [type(i).__name__ for i in store.history("a")] == ["MessageItem", "MessageItem"]
    store.save({"id": "c", "output": []}, [], store=True)  # evicts b: a was used more recently
    store.save({"id": "d", "output": []}, [], store=False)
    assert store.history("a") and store.history("c") == []
    for gone in ("b", "d", "resp_nope"):
        with pytest.raises(InvalidRequest) as err:
            store.history(gone)
        assert err.value.param == "previous_response_id"
    assert store.history(None) == []


def test_store_is_bounded_in_bytes():
    """A big reasoning item many times over: the store keeps what fits its byte budget."""
    store = ResponseStore(max_bytes=1 << 20)
    big = {"type": "reasoning", "id": "rs_1", "summary": [],
           "content": [{"type": "reasoning_text", "text": "x" * 300_000}]}
    for i in range(20):
        store.save({"id": f"r{i}", "output": [big]}, [], store=True)
        assert store.bytes <= 1 << 20
    assert store.history("r19") and store.history("r17")
    with pytest.raises(InvalidRequest):
        store.history("r0")
    huge = {**big, "content": [{"type": "reasoning_text", "text": "x" * (2 << 20)}]}
    store.save({"id": "huge", "output": [huge]}, [], store=True)  # larger than the whole budget
    with pytest.raises(InvalidRequest):
        store.history("huge")
    assert store.history("r19")
