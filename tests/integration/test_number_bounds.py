"""Number bounds in JSON schemas, enforced by the grammar on the real model, streamed and not.

The schema's shape is bounded (fixed keys, no extra properties, numbers of at most 15 digits,
bounded whitespace), so every answer finishes well within max_tokens whatever the model picks.
"""

import json

import jsonschema
import pytest

from tests.integration.conftest import chat_body

SCHEMA = {
    "type": "object",
    "properties": {
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "t": {"type": "number", "exclusiveMinimum": -5.5, "maximum": 40},
        "loss": {"type": "number", "minimum": -1, "exclusiveMaximum": -0.25},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
    },
    "required": ["confidence", "t", "loss", "ratio"],
    "additionalProperties": False,
}


def body(seed: int, stream: bool) -> dict:
    return chat_body(content="Give a weather forecast as JSON with a confidence score.",
                     max_tokens=400, temperature=0.9, seed=seed, stream=stream,
                     response_format={"type": "json_schema",
                                      "json_schema": {"name": "forecast", "strict": True, "schema": SCHEMA}})


def streamed(http, payload: dict) -> tuple[str, str | None]:
    text, finish = "", None
    with http.stream("POST", "/v1/chat/completions", json=payload) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"][0]
                text += choice["delta"].get("content") or ""
                finish = choice["finish_reason"] or finish
    return text, finish


@pytest.mark.parametrize("stream", [False, True])
def test_number_bounds_hold_on_the_real_model(http, stream):
    for seed in (1, 2, 3):
        if stream:
            text, finish = streamed(http, body(seed, True))
        else:
            resp = http.post("/v1/chat/completions", json=body(seed, False))
            assert resp.status_code == 200, resp.text
            choice = resp.json()["choices"][0]
            text, finish = choice["message"]["content"], choice["finish_reason"]
        assert finish == "stop", text  # the bounded shape always completes
        jsonschema.validate(json.loads(text), SCHEMA)  # read as doubles, as clients read it


def test_unenforceable_number_keyword_is_still_a_400(http):
    resp = http.post("/v1/chat/completions", json=chat_body(response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"step": {"type": "number", "multipleOf": 0.5}}}}}))
    assert resp.status_code == 400
    message = resp.json()["error"]["message"]
    assert "'multipleOf'" in message and "/properties/step/multipleOf" in message
