"""Hostile JSON schemas refused before the engine (tests/integration/test_schema_limits.py's
REFUSED, and a grammar past the size budget), in-process over the fake engine: a 400 naming the
keyword, its pointer and the limit, within seconds, and the server still serving after each."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import chat_body
from tests.integration.test_schema_limits import PARAM, REFUSED, structured


async def still_serving(client) -> None:
    assert (await client.get("/health")).status_code == 200
    resp = await client.post("/v1/chat/completions", json=chat_body(max_tokens=4))
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] is not None


@pytest.mark.parametrize("name", list(REFUSED))
async def test_unholdable_bounds_are_refused_with_keyword_pointer_and_limit(gateway, name):
    client, _ = gateway()
    schema, keyword, pointer, limit = REFUSED[name]
    start = time.perf_counter()
    resp = await client.post("/v1/chat/completions", json=structured(schema))
    assert time.perf_counter() - start < 10
    assert resp.status_code == 400, resp.text[:500]
    error = resp.json()["error"]
    assert error["param"] == PARAM and error["type"] == "invalid_request_error"
    assert f"'{keyword}'" in error["message"] and pointer in error["message"], error["message"]
    assert limit in error["message"], error["message"]
    await still_serving(client)


async def test_a_grammar_past_the_size_budget_is_a_400(gateway):
    client, _ = gateway()
    schema = {"type": "object", "properties": {
        f"p{i}": {"type": "string", "maxLength": 1_000_000} for i in range(400)}}
    resp = await client.post("/v1/chat/completions", json=structured(schema))
    assert resp.status_code == 400, resp.text[:500]
    error = resp.json()["error"]
    assert error["code"] == "grammar_too_large" and "500000" in error["message"]
    assert error["param"] == PARAM
    await still_serving(client)
