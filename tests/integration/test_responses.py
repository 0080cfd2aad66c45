"""The OpenAI Responses API with the official `openai` SDK against the real server and model.

One server for the module: SmolLM2 with Qwen2.5's tool-capable template (both ChatML).
"""

import json

import httpx
import jsonschema
import openai
import pytest

from tests.integration.conftest import MODEL_ID

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "maxLength": 30},
               "unit": {"enum": ["celsius", "fahrenheit"]},
               "days": {"type": "integer", "minimum": 1, "maximum": 7}},
               "required": ["city", "unit", "days"], "additionalProperties": False}}
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0,
                                                   "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
QUESTION = "What's the weather in Paris for 3 days?"


@pytest.fixture(scope="module")
def server(qwen_server):
    return qwen_server


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)


def ask(client, **extra):
    return client.responses.create(**({"model": MODEL_ID, "input": "Say hello.",
                                       "max_output_tokens": 12, "temperature": 0} | extra))


def test_text_response(client):
    resp = ask(client, instructions="You are terse.")
    assert resp.id.startswith("resp_") and resp.object == "response"
    assert resp.status in ("completed", "incomplete") and resp.model == MODEL_ID
    assert [item.type for item in resp.output] == ["message"]
    assert resp.output_text and resp.output[0].content[0].type == "output_text"
    assert 1 <= resp.usage.output_tokens <= 12
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.instructions == "You are terse."


def test_stream_events_and_deltas_add_up(client):
    events = list(ask(client, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done",
                            "response.output_item.done"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text == events[-4].text
    assert text == ask(client).output_text  # greedy: the collected body says the same
    assert final.usage.output_tokens >= 1


def test_cut_reply_is_incomplete(client):
    schema = {"type": "object", "properties": {"story": {"type": "string", "minLength": 200}},
              "required": ["story"]}
    fmt = {"format": {"type": "json_schema", "name": "story", "schema": schema}}
    resp = ask(client, max_output_tokens=5, text=fmt)
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    events = list(ask(client, max_output_tokens=5, text=fmt, stream=True))
    assert events[-1].type == "response.incomplete"


def test_json_schema_output_validates(client):
    resp = ask(client, input="Describe a person as JSON.", max_output_tokens=60,
               text={"format": {"type": "json_schema", "name": "person", "schema": PERSON,
                                "strict": True}})
    assert resp.status == "completed"  # the schema bounds the output well under the limit
    jsonschema.validate(json.loads(resp.output_text), PERSON)
    assert resp.text.format.type == "json_schema"


def test_required_function_call_and_its_output_round_trip(client):
    first = ask(client, input=QUESTION, tools=[WEATHER], tool_choice="required",
                max_output_tokens=150)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and first.status == "completed"
    for call in calls:
        assert call.name == "get_weather" and call.call_id.startswith("call_")
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": '{"temp": 21}'}
               for c in calls]
    # Stateless: the whole conversation sent back (as the Codex CLI does with store: false) …
    items = [{"role": "user", "content": QUESTION}] + [
        {"type": "function_call", "call_id": c.call_id, "name": c.name,
         "arguments": c.arguments} for c in calls] + outputs
    stateless = ask(client, input=items, tools=[WEATHER], store=False)
    assert stateless.status in ("completed", "incomplete")
    # … or chained by id: the same prompt.
    chained = ask(client, input=outputs, tools=[WEATHER], previous_response_id=first.id)
    assert chained.usage.input_tokens == stateless.usage.input_tokens
    assert chained.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens - 2


def test_streamed_function_call_arguments_add_up(client):
    events = list(ask(client, input=QUESTION, tools=[WEATHER], max_output_tokens=150,
                      tool_choice={"type": "function", "name": "get_weather"}, stream=True))
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert added and all(item.type == "function_call" for item in added)
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert pieces == done[0].arguments
    final = events[-1].response
    assert final.output[0].arguments == done[0].arguments
    jsonschema.validate(json.loads(pieces), WEATHER["parameters"])


def test_previous_response_id_includes_history(client):
    first = ask(client, input="My name is Zed.")
    second = ask(client, input="What is my name?", previous_response_id=first.id)
    alone = ask(client, input="What is my name?")
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, previous_response_id="resp_unknown")
    assert err.value.status_code == 400
    assert err.value.body["param"] == "previous_response_id"
    unstored = ask(client, store=False)
    with pytest.raises(openai.BadRequestError):
        ask(client, previous_response_id=unstored.id)


def test_errors_and_metrics(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        resp = http.post("/v1/responses", json={"model": "no/such-model", "input": "hi"})
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
        resp = http.post("/v1/responses", json={"model": MODEL_ID, "input": [
            {"type": "web_search_call", "id": "x"}]})
        assert resp.status_code == 400 and "unsupported input item" in resp.json()["error"]["message"]
        metrics = http.get("/metrics").text
    assert 'localgw_requests_total{route="/v1/responses",status="200"}' in metrics


def test_sdk_stream_helper_accumulates_the_events(client):
    # The helper wants `response.completed`: a schema-bound reply ends well under the limit.
    with client.responses.stream(model=MODEL_ID, input="Describe a person as JSON.",
                                 max_output_tokens=60, temperature=0, text={"format": {
                                     "type": "json_schema", "name": "person",
                                     "schema": PERSON}}) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text and final.id.startswith("resp_")
    jsonschema.validate(json.loads(text), PERSON)
