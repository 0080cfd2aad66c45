"""The Anthropic Messages API with the official `anthropic` SDK against the real server and model.

One server for the module: SmolLM2 with Qwen2.5's tool-capable template (both ChatML), an API
key (so the missing-key error is testable) and a small body limit (so is the 413).
"""

import json

import anthropic
import httpx
import jsonschema
import pytest

from tests.helpers import templated_server
from tests.integration.conftest import MODEL_ID

KEY = "test-key"
WEATHER = {"name": "get_weather", "description": "Current weather in a city",
           "input_schema": {"type": "object", "properties": {
               "city": {"type": "string", "maxLength": 30},
               "unit": {"enum": ["celsius", "fahrenheit"]},
               "days": {"type": "integer", "minimum": 1, "maximum": 7}},
               "required": ["city", "unit", "days"], "additionalProperties": False}}
ADD = {"name": "add", "description": "Add two numbers",
       "input_schema": {"type": "object", "properties": {"a": {"type": "number"},
                                                         "b": {"type": "number"}},
                        "required": ["a", "b"]}}
SCHEMA_OF = {"get_weather": WEATHER["input_schema"], "add": ADD["input_schema"]}
GREEDY = {"temperature": 0}  # the SDK no longer has the parameter; the API still takes it
QUESTION = [{"role": "user", "content": "What's the weather in Paris for 3 days?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = templated_server("Qwen-Qwen2.5-7B-Instruct.jinja", tmp_path_factory.mktemp("home"),
                            "--api-key", KEY, "--max-body", "65536")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120, headers={"x-api-key": KEY}) as c:
        yield c


def ask(client, **extra):
    body = {"model": MODEL_ID, "max_tokens": 12, "extra_body": GREEDY,
            "messages": [{"role": "user", "content": "Say hello."}]}
    return client.messages.create(**(body | extra))


def test_text_message(client):
    msg = ask(client)
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.model == MODEL_ID
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens") and msg.stop_sequence is None
    assert 1 <= msg.usage.output_tokens <= 12
    assert msg.usage.input_tokens + msg.usage.cache_read_input_tokens > 5


def test_stream_event_order_and_deltas_add_up(client, http):
    kinds, text = [], ""
    with client.messages.stream(model=MODEL_ID, max_tokens=12, extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Say hello."}]) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta":
                text += event.delta.text
        final = stream.get_final_message()
    raw = [k for k in kinds if k not in ("text", "ping")]  # `text`: the SDK's own helper event
    assert raw[0] == "message_start"
    assert raw[1:3] == ["content_block_start", "content_block_delta"]
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert text == final.content[0].text and text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens >= 1
    assert final.content[0].text == ask(client).content[0].text  # greedy: same as collected
    # On the wire: named events, `ping` after `message_start`, and no `[DONE]`.
    with http.stream("POST", "/v1/messages", json={
            "model": MODEL_ID, "max_tokens": 4, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}) as resp:
        body = resp.read().decode()
    names = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-1] == "message_stop"
    assert "[DONE]" not in body


@pytest.mark.parametrize("choice", [{"type": "tool", "name": "get_weather"},
                                    {"type": "tool", "name": "add"}, {"type": "any"}])
def test_forced_tool_call_validates_and_round_trips(client, choice):
    msg = client.messages.create(model=MODEL_ID, max_tokens=150, extra_body=GREEDY,
                                 messages=QUESTION, tools=[WEATHER, ADD], tool_choice=choice)
    assert msg.stop_reason == "tool_use"
    calls = [b for b in msg.content if b.type == "tool_use"]
    assert calls
    for call in calls:
        assert call.id.startswith("toolu_")
        if choice["type"] == "tool":
            assert call.name == choice["name"]
        jsonschema.validate(call.input, SCHEMA_OF[call.name])
    # The result goes back in a second turn, as Claude Code sends it.
    follow = client.messages.create(
        model=MODEL_ID, max_tokens=8, extra_body=GREEDY, tools=[WEATHER, ADD],
        messages=QUESTION + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id,
                                          "content": '{"temp": 21}'} for c in calls]}])
    assert follow.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert (follow.usage.input_tokens + follow.usage.cache_read_input_tokens
            > msg.usage.input_tokens + msg.usage.cache_read_input_tokens)


def test_streamed_tool_input_concatenates_to_the_input(client):
    pieces, starts = [], []
    with client.messages.stream(model=MODEL_ID, max_tokens=150, extra_body=GREEDY, messages=QUESTION,
                                tools=[WEATHER, ADD],
                                tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        for event in stream:
            if event.type == "content_block_start":
                starts.append(event.content_block)
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                pieces.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert [s.type for s in starts] == ["tool_use"] and starts[0].input == {}
    assert len(pieces) > 1
    tool_use = final.content[0]
    assert json.loads("".join(pieces)) == tool_use.input
    jsonschema.validate(tool_use.input, WEATHER["input_schema"])
    assert final.stop_reason == "tool_use"


def test_stop_sequence_ends_the_reply(client):
    # The forced call's text always contains `"arguments"`, so the stop sequence must end it.
    msg = client.messages.create(model=MODEL_ID, max_tokens=60, extra_body=GREEDY, messages=QUESTION,
                                 tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"},
                                 stop_sequences=['"arguments"', "never-said-xyz"])
    assert msg.stop_reason == "stop_sequence"
    assert msg.stop_sequence == '"arguments"'
    assert all('"arguments"' not in (getattr(b, "text", "") or "") for b in msg.content)


def test_system_blocks_and_count_tokens_match_usage(client):
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "Answer in English."}]
    body = {"model": MODEL_ID, "system": system, "tools": [WEATHER, ADD],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"},
                                                      {"type": "text", "text": "there"}]}]}
    counted = client.messages.count_tokens(**body).input_tokens
    for _ in range(2):  # the second time most of the prompt comes from the KV cache
        msg = client.messages.create(max_tokens=4, extra_body=GREEDY, **body)
        assert msg.usage.input_tokens + msg.usage.cache_read_input_tokens == counted
    assert msg.usage.cache_read_input_tokens > 0
    as_string = client.messages.count_tokens(**(body | {
        "system": "You are terse.\n\nAnswer in English."})).input_tokens
    without = client.messages.count_tokens(**{k: v for k, v in body.items() if k != "system"})
    assert as_string == counted and without.input_tokens != counted


def test_bearer_token_works_like_x_api_key(server):
    bearer = anthropic.Anthropic(base_url=server.url, auth_token=KEY, max_retries=0)
    assert bearer.messages.count_tokens(model=MODEL_ID, messages=QUESTION).input_tokens > 5


def _error(resp, status, kind):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["error"]["message"]
    return body["error"]["message"]


def test_errors_have_anthropic_shape(server, http, client):
    msg = _error(http.post("/v1/messages", json={"model": MODEL_ID, "messages": QUESTION}),
                 400, "invalid_request_error")
    assert "max_tokens" in msg
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="no/such-model", max_tokens=4, messages=QUESTION)
    assert err.value.body["error"]["type"] == "not_found_error"
    assert "no/such-model" in err.value.body["error"]["message"]
    with httpx.Client(base_url=server.url) as anon:
        _error(anon.post("/v1/messages", json={"model": MODEL_ID, "max_tokens": 4,
                                               "messages": QUESTION}), 401, "authentication_error")
        _error(anon.post("/v1/messages/count_tokens", json={}), 401, "authentication_error")
        # Only the Anthropic paths use Anthropic's shape.
        assert anon.post("/v1/chat/completions", json={}).json()["error"]["type"] == \
            "authentication_error"
    wrong = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model=MODEL_ID, max_tokens=4, messages=QUESTION)
    _error(http.post("/v1/messages", content=b"{" + b" " * 70000 + b"}",
                     headers={"content-type": "application/json"}), 413, "request_too_large")
    _error(http.post("/v1/messages", json={"model": MODEL_ID, "max_tokens": 4,
                                           "messages": QUESTION, "tools": [WEATHER],
                                           "tool_choice": {"type": "tool", "name": "nope"}}),
           400, "invalid_request_error")
    _error(http.post("/v1/messages", content=b"not json",
                     headers={"content-type": "application/json"}), 400, "invalid_request_error")


def test_requests_are_counted_in_metrics(http):
    text = http.get("/metrics").text
    assert 'localgw_requests_total{route="/v1/messages",status="200"}' in text
    assert 'localgw_requests_total{route="/v1/messages/count_tokens",status="200"}' in text
