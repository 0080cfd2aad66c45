"""Structured outputs and forced tool calls with the real model, enforced by llama.cpp grammars."""

import json

import httpx
import jsonschema
import pytest

from localgw.chat.jsonprefix import scan

from tests.integration.conftest import MODEL_ID, chat_body

SCHEMAS = {
    "nested": {"type": "object", "properties": {
        "person": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 30}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
            "required": ["name", "age"], "additionalProperties": False}},
        "required": ["person"], "additionalProperties": False},
    "arrays": {"type": "object", "properties": {
        "colours": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 2, "maxItems": 4}},
        "required": ["colours"]},
    "enum_const": {"type": "object", "properties": {
        "size": {"enum": ["small", "medium", "large"]}, "version": {"const": 3}},
        "required": ["size", "version"]},
    "any_of": {"type": "object", "properties": {
        "value": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 10}]},
        "maybe": {"oneOf": [{"type": "boolean"}, {"type": "null"}]}},
        "required": ["value", "maybe"]},
    "refs": {"type": "object", "properties": {"home": {"$ref": "#/$defs/address"},
                                              "work": {"$ref": "#/$defs/address"}},
             "required": ["home"], "$defs": {"address": {"type": "object", "properties": {
                 "city": {"type": "string", "maxLength": 20}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                 "required": ["city", "zip"]}}},
    "optional_and_formats": {"type": "object", "properties": {
        "title": {"type": "string", "minLength": 3, "maxLength": 25},
        "day": {"type": "string", "format": "date"},
        "id": {"type": "string", "format": "uuid"},
        "score": {"type": "integer", "exclusiveMinimum": -5, "exclusiveMaximum": 5},
        "note": {"type": "string", "maxLength": 10}},
        "required": ["title", "day", "id", "score"], "additionalProperties": False},
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schema_output_validates(http, name):
    schema = SCHEMAS[name]
    for seed in (1, 2):
        resp = http.post("/v1/chat/completions", json=chat_body(
            content=f"Produce a JSON object ({name}).", max_tokens=200, temperature=0.8, seed=seed,
            response_format={"type": "json_schema",
                             "json_schema": {"name": name, "strict": True, "schema": schema}}))
        assert resp.status_code == 200, resp.text
        choice = resp.json()["choices"][0]
        text = choice["message"]["content"]
        if choice["finish_reason"] == "stop":
            jsonschema.validate(json.loads(text), schema, format_checker=jsonschema.FormatChecker())
        else:  # cut by max_tokens (a small model may ramble inside a string): a valid JSON prefix
            assert choice["finish_reason"] == "length"
            assert text.lstrip().startswith("{") and not scan(text).broken


def test_json_object_mode(http):
    # Whatever the model writes is one JSON object, or (cut by max_tokens) a valid prefix of one:
    # that holds for any output, so the test does not need the model to finish on its own.
    for seed in range(1, 5):
        resp = http.post("/v1/chat/completions", json=chat_body(
            content="Describe a cat as JSON.", max_tokens=120, temperature=0.7, seed=seed,
            response_format={"type": "json_object"}))
        choice = resp.json()["choices"][0]
        text = choice["message"]["content"]
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(text), dict)
        else:  # cut by max_tokens: still a valid JSON prefix, never free text
            assert choice["finish_reason"] == "length"
            assert text.lstrip().startswith("{") and not scan(text).broken


def test_unsupported_schema_is_a_precise_400_and_server_keeps_serving(http):
    resp = http.post("/v1/chat/completions", json=chat_body(response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"mail": {"type": "string", "format": "email"}}}}}))
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert "'format'" in err["message"] and "/properties/mail/format" in err["message"]
    assert err["param"] == "response_format.json_schema.schema"
    assert http.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200


def test_models_report_features(http):
    model = http.get(f"/v1/models/{MODEL_ID}").json()
    assert {"json_mode", "structured_outputs", "logprobs"} <= set(model["supported_features"])
    assert "tools" not in model["supported_features"]  # SmolLM2's own template has no tools


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "unit", "days"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}
SCHEMA_OF = {"get_weather": WEATHER["function"]["parameters"], "add": ADD["function"]["parameters"]}


@pytest.fixture(scope="module")
def tool_server(qwen_server):
    """SmolLM2 with Qwen2.5's tool-capable template (both are ChatML)."""
    with httpx.Client(base_url=qwen_server.url, timeout=120) as client:
        yield client


def tool_body(choice, stream=False, **extra):
    return {"model": MODEL_ID, "messages": [{"role": "user", "content": "What's the weather in Paris for 3 days?"}],
            "tools": [WEATHER, ADD], "tool_choice": choice, "max_tokens": 150, "temperature": 0,
            "stream": stream, **extra}


def collect_stream(client, body):
    message = {"content": None, "tool_calls": {}}
    finish = None
    first_deltas = {}
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.startswith("data: {"):
                continue
            choice = json.loads(line[6:])["choices"][0]
            finish = choice["finish_reason"] or finish
            for call in choice["delta"].get("tool_calls") or []:
                slot = message["tool_calls"].setdefault(call["index"], {"name": "", "arguments": ""})
                first_deltas.setdefault(call["index"], call)
                slot["name"] += call.get("function", {}).get("name") or ""
                slot["arguments"] += call.get("function", {}).get("arguments") or ""
    for index, first in first_deltas.items():
        assert first["id"].startswith("call_") and first["type"] == "function"
        assert first["function"]["arguments"] == ""
    return [message["tool_calls"][i] for i in sorted(message["tool_calls"])], finish


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "add"}},
                                    {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_calls_validate_against_their_schema(tool_server, choice, stream):
    if stream:
        calls, finish = collect_stream(tool_server, tool_body(choice, stream=True))
    else:
        resp = tool_server.post("/v1/chat/completions", json=tool_body(choice))
        assert resp.status_code == 200, resp.text
        choice_ = resp.json()["choices"][0]
        finish = choice_["finish_reason"]
        assert choice_["message"]["content"] is None
        calls = [c["function"] for c in choice_["message"]["tool_calls"]]
    assert finish == "tool_calls"
    assert calls
    for call in calls:
        if isinstance(choice, dict):
            assert call["name"] == choice["function"]["name"]
        jsonschema.validate(json.loads(call["arguments"]), SCHEMA_OF[call["name"]])


def test_tool_result_turn_renders_and_answers(tool_server):
    first = tool_server.post("/v1/chat/completions", json=tool_body(
        {"type": "function", "function": {"name": "get_weather"}})).json()
    call = first["choices"][0]["message"]["tool_calls"][0]
    body = tool_body("auto")
    body["messages"] += [first["choices"][0]["message"],
                         {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'}]
    resp = tool_server.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200
    assert resp.json()["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]


def test_unknown_named_tool_is_400(tool_server):
    resp = tool_server.post("/v1/chat/completions", json=tool_body(
        {"type": "function", "function": {"name": "launch_rockets"}}))
    assert resp.status_code == 400
    assert "launch_rockets" in resp.json()["error"]["message"]
    assert resp.json()["error"]["param"] == "tool_choice.function.name"


def test_tool_schema_the_grammar_cannot_honour_is_400(tool_server):
    bad = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "number", "multipleOf": 0.5}}}}}
    resp = tool_server.post("/v1/chat/completions", json={**tool_body("required"), "tools": [bad]})
    assert resp.status_code == 400
    assert "'multipleOf'" in resp.json()["error"]["message"]
    assert resp.json()["error"]["param"] == "tools[0].function.parameters"


def test_tool_capable_template_reports_tools(tool_server):
    model = tool_server.get(f"/v1/models/{MODEL_ID}").json()
    assert "tools" in model["supported_features"]
