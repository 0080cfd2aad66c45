"""Fuzzing driven by /openapi.json against the real server and model: bodies drawn from the
request schemas (valid ones) and mutated past them (invalid ones), bounded to fit the suite.

Every answer must be: no 5xx, under 30 s, a 4xx in the error shape (`{"error": {"message",
"type", ...}}`), a stream that ends with [DONE]; and the server healthy and idle at the end.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.helpers import wait_until
from tests.integration.conftest import MODEL_ID

pytestmark = pytest.mark.integration

CASES = 120  # about 70 s on a 2-core machine: drawing from five request schemas dominates
MAX_TOKENS = 4  # the hook's cap: enough to decode, small enough for 200 cases in about a minute
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)


def operations(doc: dict) -> list[tuple[str, dict]]:
    ops = []
    for path, methods in sorted(doc["paths"].items()):
        post = methods.get("post")
        if post:
            schema = post["requestBody"]["content"]["application/json"]["schema"]
            ops.append((path, {**schema, "components": doc["components"]}))
    return ops


def mutated(valid: st.SearchStrategy) -> st.SearchStrategy:
    """A valid body with one field replaced or added with any JSON value."""
    def mutate(args):
        body, key, value = args
        if isinstance(body, dict):
            keys = list(body) + [key]
            body = {**body, keys[hash(key) % len(keys)]: value}
        return body
    return st.tuples(valid, st.text(max_size=12), json_values).map(mutate)


def hook(path: str, body, data: st.DataObject):
    """Point most requests at the real model, cap what decoding costs, keep the model loaded.

    A token field left out or null means "up to the server's cap" (thousands of tokens): it gets
    the test's cap too. Values of a wrong type stay, for the server to refuse.
    """
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if data.draw(st.integers(0, 9), label="real model") < 8:
        body["model"] = MODEL_ID
    for field in TOKEN_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_TOKENS:
            body[field] = MAX_TOKENS
        elif field in body and value is None:
            del body[field]
    main = "max_output_tokens" if path == "/v1/responses" else "max_tokens"
    if not any(field in body for field in TOKEN_FIELDS):
        body[main] = MAX_TOKENS
    if isinstance(body.get("n"), int) and body["n"] > 2:
        body["n"] = 2
    body.pop("keep_alive", None)  # 0 would unload the model after each case: slow, not broken
    return body


def encoded(body) -> bytes:
    return json.dumps(body).encode()


def check_answer(path: str, body, resp: httpx.Response, took: float) -> None:
    where = f"{path} {json.dumps(body)[:300]}"
    assert resp.status_code < 500, f"{resp.status_code} for {where}: {resp.text[:300]}"
    assert took < 30, f"{took:.1f}s for {where}"
    if resp.status_code >= 400:
        error = resp.json().get("error")
        assert isinstance(error, dict), f"no error object for {where}: {resp.text[:300]}"
        assert isinstance(error.get("message"), str) and isinstance(error.get("type"), str), where
    elif resp.headers.get("content-type", "").startswith("text/event-stream"):
        frames = [line for line in resp.text.splitlines() if line.startswith("data: ")]
        assert frames and frames[-1] == "data: [DONE]", f"unfinished stream for {where}"
        for frame in frames[:-1]:
            json.loads(frame[6:])
    else:
        assert isinstance(resp.json(), dict), where


def test_fuzz_every_post_route_from_the_openapi_document(server, http):
    doc = http.get("/openapi.json").json()
    ops = operations(doc)
    assert {"/v1/chat/completions", "/v1/completions"} <= {p for p, _ in ops}
    strategies = {path: from_schema(schema) for path, schema in ops}

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def case(data):
        path = data.draw(st.sampled_from([p for p, _ in ops]), label="path")
        valid = strategies[path]
        body = data.draw(st.one_of(valid, mutated(valid), json_values), label="body")
        body = hook(path, body, data)
        start = time.perf_counter()
        with httpx.Client(base_url=server.url, timeout=60) as c:
            resp = c.post(path, content=encoded(body), headers={"content-type": "application/json"})
        check_answer(path, body, resp, time.perf_counter() - start)

    case()
    assert http.get("/health").status_code == 200
    assert wait_until(lambda: all(m["active_requests"] == 0 and not m["busy"]
                                  for m in http.get("/health").json()["models"]), timeout=30)
