"""Hostile JSON schemas against the real server: each is answered within seconds with output
the schema accepts; after each, the same server process still answers /health and a plain chat.
Those refused with a 400 naming the keyword, its pointer and the limit (REFUSED, a grammar past
the size budget) are refused before the engine, so they run in-process over the fake engine
(tests/unit/test_schema_limits_fake.py); the tool test keeps one refusal here, after an answer.

And the formats: many samples at a high temperature, every value checked by jsonschema's
Draft 2020-12 format checker (RFC 3339 dates and times).
"""

from __future__ import annotations

import json
import time

import jsonschema
import pytest

from tests.integration.conftest import MODEL_ID, chat_body

pytestmark = pytest.mark.integration

CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER
PARAM = "response_format.json_schema.schema"


def wrap(value: dict) -> dict:
    return {"type": "object", "properties": {"x": value}, "required": ["x"],
            "additionalProperties": False}


ANSWERED = {
    "maxLength 100000": wrap({"type": "string", "maxLength": 100_000}),
    "maxItems 100000": wrap({"type": "array", "items": {"type": "integer"}, "maxItems": 100_000}),
    "pattern ^a{1,100000}$": wrap({"type": "string", "pattern": "^a{1,100000}$"}),
    "number maximum 1e100": wrap({"type": "number", "maximum": 1e100}),
    "number maximum 1e308": wrap({"type": "number", "maximum": 1e308}),
    "integer maximum 1e100": wrap({"type": "integer", "maximum": 1e100}),
    "integer maximum 1e308": wrap({"type": "integer", "maximum": 1e308}),
    "number exclusive ±1e308": wrap({"type": "number", "exclusiveMinimum": -1e308,
                                     "exclusiveMaximum": 1e308}),
    "integer exclusive ±1e308": wrap({"type": "integer", "exclusiveMinimum": -1e308,
                                      "exclusiveMaximum": 1e308}),
    "a string between 2000 and 2500": wrap({"type": "string", "minLength": 2000, "maxLength": 2500}),
}

# (schema, keyword, pointer, words of the limit)
REFUSED = {
    "number exclusiveMinimum 1e308": (wrap({"type": "number", "exclusiveMinimum": 1e308}),
                                      "exclusiveMinimum", "/properties/x/exclusiveMinimum", "15 digits"),
    "integer minimum 1e100": (wrap({"type": "integer", "minimum": 1e100}), "minimum",
                              "/properties/x/minimum", "16 digits"),
    "maxLength past the limit": (wrap({"type": "string", "maxLength": 10 ** 9}), "maxLength",
                                 "/properties/x/maxLength", "1000000"),
    "maxItems past the limit": (wrap({"type": "array", "maxItems": 2_000_000}), "maxItems",
                                "/properties/x/maxItems", "1000000"),
    "a pattern of 5000 nested groups": (wrap({"type": "string", "pattern": "(" * 5000 + "a" + ")" * 5000}),
                                        "pattern", "/properties/x/pattern", "10000"),
    "a pattern of 3000 nested groups": (wrap({"type": "string", "pattern": "(" * 3000 + ")" * 3000}),
                                        "pattern", "/properties/x/pattern", "32"),
    "a varying group repeated 1000 times": (wrap({"type": "string", "pattern": "^([a-z]+ ?){1,1000}$"}),
                                            "pattern", "/properties/x/pattern", "32"),
}


def structured(schema: dict, **extra) -> dict:
    sampling = {"max_tokens": 64, "temperature": 0.8, "seed": 1, **extra}
    return chat_body(content="Fill in the JSON.", **sampling,
                     response_format={"type": "json_schema",
                                      "json_schema": {"name": "x", "strict": True, "schema": schema}})


def still_serving(http) -> None:
    assert http.get("/health").status_code == 200
    resp = http.post("/v1/chat/completions", json=chat_body(max_tokens=4))
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] is not None


@pytest.mark.parametrize("name", list(ANSWERED))
def test_hostile_bounds_are_answered_within_seconds_and_hold(http, name):
    schema = ANSWERED[name]
    start = time.perf_counter()
    resp = http.post("/v1/chat/completions", json=structured(schema))
    took = time.perf_counter() - start
    assert resp.status_code == 200, resp.text[:500]
    assert took < 20, f"answered after {took:.1f}s"  # 64 tokens on a busy 2-core machine
    choice = resp.json()["choices"][0]
    if choice["finish_reason"] == "stop":
        jsonschema.validate(json.loads(choice["message"]["content"]), schema, format_checker=CHECKER)
    else:
        assert choice["finish_reason"] == "length"
    still_serving(http)


def test_bounded_hostile_numbers_always_finish_and_validate(http):
    """Numbers are at most 17 characters and spaces at most one, so 200 tokens always finish."""
    schema = {"type": "object", "properties": {
        k: ANSWERED[k]["properties"]["x"] for k in ANSWERED if "maximum" in k or "exclusive" in k},
        "additionalProperties": False}
    schema["required"] = list(schema["properties"])
    for seed in (1, 2):
        resp = http.post("/v1/chat/completions", json=structured(schema, seed=seed, max_tokens=200))
        choice = resp.json()["choices"][0]
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)


def test_tool_parameters_get_the_same_protection(http):
    note = {"type": "string", "maxLength": 100_000}
    tool = {"type": "function", "function": {"name": "save", "parameters": wrap(note)}}
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Save a note."}],
            "tools": [tool], "tool_choice": "required", "max_tokens": 64, "temperature": 0}
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text[:500]
    still_serving(http)
    note["maxLength"] = 10 ** 9
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400, resp.text[:500]
    error = resp.json()["error"]
    assert error["param"] == "tools[0].function.parameters"
    assert "'maxLength'" in error["message"] and "/properties/x/maxLength" in error["message"]
    still_serving(http)


FORMATS = {"type": "object", "properties": {
    name: {"type": "array", "items": {"type": "string", "format": fmt}, "minItems": 3, "maxItems": 3}
    for name, fmt in (("dates", "date"), ("times", "time"), ("stamps", "date-time"))},
    "required": ["dates", "times", "stamps"], "additionalProperties": False}


def test_formats_sampled_hot_are_valid_rfc_3339(http):
    """The shape is bounded (three of each, fixed-length values, at most one space between
    tokens), so every choice finishes within max_tokens whatever the model picks."""
    values = 0
    for seed in (1, 2):
        resp = http.post("/v1/chat/completions", json=chat_body(
            content="Give three dates, three times and three timestamps as JSON.", n=4,
            temperature=1.8, top_p=1.0, seed=seed, max_tokens=400,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "when", "strict": True, "schema": FORMATS}}))
        assert resp.status_code == 200, resp.text[:500]
        for choice in resp.json()["choices"]:
            assert choice["finish_reason"] == "stop", choice
            data = json.loads(choice["message"]["content"])
            jsonschema.validate(data, FORMATS, format_checker=CHECKER)
            values += sum(len(v) for v in data.values())
    assert values == 2 * 4 * 9
