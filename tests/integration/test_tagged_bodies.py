"""Hostile bodies the fuzz test is unlikely to draw: each route's example body (from
/openapi.json) with a tag, a role or a choice replaced by an object, an array, a number or a
boolean. Each is a 400 in the route's error shape, never a 5xx; so are the 5xx answers the fuzz
found, kept here as regular cases."""

from __future__ import annotations

import json

import pytest

from localgw.server.openapi import EXAMPLES
from tests.integration.conftest import MODEL_ID
from tests.integration.test_fuzz import check_error, put

pytestmark = pytest.mark.integration

# the places in each example whose value picks a kind: a block, an item, a role, a choice
TAGS = {
    "/v1/chat/completions": [("messages", 0, "role"), ("messages", 1, "content", 0, "type"),
                             ("messages", 2, "tool_calls", 0, "type"), ("tools", 0, "type"),
                             ("tool_choice",), ("messages", 3, "role")],
    "/v1/completions": [("prompt",)],
    "/v1/messages": [("messages", 0, "role"), ("messages", 1, "content", 0, "type"),
                     ("messages", 1, "content", 1, "type"), ("messages", 2, "content", 0, "type"),
                     ("messages", 2, "content", 1, "type"), ("tool_choice", "type"),
                     ("tool_choice",), ("thinking", "type"), ("tools", 0, "name")],
    "/v1/responses": [("input", 0, "role"), ("input", 1, "type"), ("input", 2, "type"),
                      ("input", 3, "type"), ("input", 3, "content", 0, "type"),
                      ("text", "format", "type"), ("text", "format"), ("tool_choice",),
                      ("tools", 0, "type")],
}
TAGS["/v1/messages/count_tokens"] = TAGS["/v1/messages"]
ODD = [{}, [], [{}], 1, 1.5, True]

# 5xx answers found by the fuzz and by hand (server errors before their fixes)
FOUND = [
    ("/v1/messages", ("messages", 0, "content"), [{"type": {}, "data": ""}]),
    ("/v1/messages/count_tokens", ("messages", 0, "content"), [{"type": {}, "data": ""}]),
    ("/v1/messages", ("messages", 0, "content"), [{"type": [], "text": "hi"}]),
    ("/v1/chat/completions", ("logit_bias",), {"\u00b2": 1}),  # a digit to isdigit(), not int()
    ("/v1/chat/completions", ("logit_bias",), {"9" * 5000: 1}),  # past int()'s digit limit
]


def body_for(path: str) -> dict:
    body = dict(EXAMPLES[path], model=MODEL_ID)
    for field in ("max_tokens", "max_output_tokens"):
        if field in body:
            body[field] = 4
    return body


def cases():
    for path, places in TAGS.items():
        for at in places:
            for value in ODD:
                yield path, at, value
    yield from FOUND


@pytest.mark.parametrize("path,at,value", list(cases()),
                         ids=lambda v: json.dumps(v)[:40] if not isinstance(v, str) else v)
def test_a_tag_of_the_wrong_type_is_a_400_in_the_routes_shape(http, path, at, value):
    body = put(body_for(path), at, value)
    resp = http.post(path, content=json.dumps(body).encode(),
                     headers={"content-type": "application/json"})
    where = f"{path} {json.dumps(body)[:300]}"
    assert resp.status_code == 400, f"{resp.status_code} for {where}: {resp.text[:300]}"
    check_error(path, resp, where)


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_each_example_body_is_answered(http, path):
    resp = http.post(path, json=body_for(path))
    if "rerank" in path:  # the server's one model is a chat model, not a reranker: a 400 saying so
        assert resp.status_code == 400 and "not a reranker" in resp.text, resp.text
        return
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json(), dict) and http.get("/health").status_code == 200
