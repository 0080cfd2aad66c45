"""Fuzzing driven by /openapi.json: for every POST route, bodies drawn from its request schema
(valid ones), its example bodies, either of those with one value anywhere in them replaced by any
JSON value (a block's `type` as an object, a role as a number…), and plain JSON values.

Every answer must be: no 5xx, under 30 s, a 4xx in the route's error shape (OpenAI's
`{"error": {"message", "type", ...}}`; Anthropic's `{"type": "error", "error": {...}}` under
/v1/messages), a stream that ends the way its format ends; and the server healthy and idle after
each route.

The HTTP and error layer is the point, so the chat routes run their full CASES in-process over the
fake engine (tests/unit/test_fuzz_fake.py, grammars parsed by llama.cpp on the real vocabulary);
here, against the real server and model, each route runs REAL_CASES of them, for what only a real
engine can get wrong (its tokenizer, its decode of odd prompts), and the embedding routes, which
the fake engine does not serve, their full CASES. LOCALGW_FUZZ_CASES sets the cases per route on
either engine (more for a hunt), LOCALGW_FUZZ_SEED draws other cases than the fixed ones the suite
runs.
"""

from __future__ import annotations

import copy
import json
import os
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from localgw.server.openapi import REQUEST_BODIES
from tests.helpers import wait_until
from tests.integration.conftest import MODEL_ID

pytestmark = pytest.mark.integration

CASES = int(os.environ.get("LOCALGW_FUZZ_CASES", "40"))  # per route
REAL_CASES = int(os.environ.get("LOCALGW_FUZZ_CASES", "10"))  # per chat route, on the real model
CHAT_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/messages",
               "/v1/messages/count_tokens", "/v1/responses")  # the fake engine serves these
SEED = os.environ.get("LOCALGW_FUZZ_SEED")
ARRAY_CAP = 3  # drawn arrays stay short: drawing a body costs more than the server's answer
MAX_TOKENS = 4  # the hook's cap: enough to decode, small enough for many cases a minute
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
TAG_KEYS = ("type", "role")
ANTHROPIC = ("/v1/messages", "/v1/messages/count_tokens")
LAST_EVENTS = {"/v1/messages": {"message_stop", "error"},
               "/v1/responses": {"response.completed", "response.incomplete", "response.failed",
                                 "error"}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)
# what a tag or a role becomes in a hostile body: every JSON type but the string it should be
odd_values = st.sampled_from([{}, [], [{}], {"type": {}}, 0, -1, 1.5, True, None, "", 2**64])


def operations(doc: dict) -> dict[str, tuple[dict, list]]:
    """Each POST route's request schema (with the components) and example bodies."""
    ops = {}
    for path, methods in sorted(doc["paths"].items()):
        if "post" in methods:
            media = methods["post"]["requestBody"]["content"]["application/json"]
            examples = [e["value"] for e in media.get("examples", {}).values()]
            ops[path] = ({**media["schema"], "components": doc["components"]}, examples)
    return ops


def drawable(schema):
    """The schema with its arrays kept short, which hypothesis-jsonschema draws several times
    faster; every body it describes is one the full schema describes too."""
    if isinstance(schema, list):
        return [drawable(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: v if k in ("const", "enum") else drawable(v) for k, v in schema.items()}
    if out.get("type") == "array":
        out["maxItems"] = min(out.get("maxItems", ARRAY_CAP), ARRAY_CAP)
    return out


def places(body, at: tuple = ()):
    """Every place in a JSON value, as the keys and indexes that lead there."""
    yield at
    items = body.items() if isinstance(body, dict) else enumerate(body) if isinstance(
        body, list) else ()
    for key, value in items:
        yield from places(value, at + (key,))


def put(body, at: tuple, value):
    """A copy of `body` with `value` at the place `at`."""
    if not at:
        return value
    body = copy.deepcopy(body)
    inner = body
    for key in at[:-1]:
        inner = inner[key]
    inner[at[-1]] = value
    return body


def mutated(valid: st.SearchStrategy) -> st.SearchStrategy:
    """A valid body with one value, at any depth, replaced by any JSON value; half the time the
    value is a `type` or `role`, which picks what kind of block, item or turn the rest is."""
    @st.composite
    def draw(draw_):
        body = draw_(valid)
        every = list(places(body))
        tags = [at for at in every if at and at[-1] in TAG_KEYS]
        at = draw_(st.sampled_from(every) | st.sampled_from(tags or every), label="place")
        return put(body, at, draw_(odd_values | json_values, label="value"))
    return draw()


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


def check_error(path: str, resp: httpx.Response, where: str) -> None:
    body = resp.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"no error object for {where}: {resp.text[:300]}"
    assert isinstance(error.get("message"), str) and isinstance(error.get("type"), str), where
    if path in ANTHROPIC:
        assert body.get("type") == "error", f"not Anthropic's error shape for {where}"


def check_stream(path: str, text: str, where: str) -> None:
    frames = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    if path in LAST_EVENTS:
        events = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
        assert events and events[-1] in LAST_EVENTS[path], f"unfinished stream for {where}"
    else:
        assert frames and frames[-1] == "[DONE]", f"unfinished stream for {where}"
        frames = frames[:-1]
    for frame in frames:
        json.loads(frame)


def check_answer(path: str, body, resp: httpx.Response, took: float) -> None:
    where = f"{path} {json.dumps(body)[:300]}"
    assert resp.status_code < 500, f"{resp.status_code} for {where}: {resp.text[:300]}"
    assert took < 30, f"{took:.1f}s for {where}"
    if resp.status_code >= 400:
        check_error(path, resp, where)
    elif resp.headers.get("content-type", "").startswith("text/event-stream"):
        check_stream(path, resp.text, where)
    else:
        assert isinstance(resp.json(), dict), where


def fuzz_route(url: str, path: str, cases: int) -> None:
    """`cases` drawn bodies POSTed to `path` of the server at `url`, each answer checked; then the
    server must be healthy and idle."""
    with httpx.Client(base_url=url, timeout=60) as http:
        ops = operations(http.get("/openapi.json").json())
    assert set(ops) == set(REQUEST_BODIES)  # every POST route is described, so fuzzed here
    schema, examples = ops[path]
    assert examples, f"{path} shows no example body"
    valid = from_schema(drawable(schema))
    # drawn bodies are seldom whole conversations; the examples are, so they are varied too
    typical = st.sampled_from(examples)

    @settings(max_examples=cases, deadline=None, derandomize=SEED is None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def case(data):
        body = data.draw(st.one_of(valid, mutated(valid), typical, mutated(typical), json_values),
                         label="body")
        body = hook(path, body, data)
        start = time.perf_counter()
        with httpx.Client(base_url=url, timeout=60) as c:
            resp = c.post(path, content=encoded(body), headers={"content-type": "application/json"})
        check_answer(path, body, resp, time.perf_counter() - start)

    (seed(int(SEED))(case) if SEED is not None else case)()
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/health").status_code == 200
        assert wait_until(lambda: all(m["active_requests"] == 0 and not m["busy"]
                                      for m in http.get("/health").json()["models"]), timeout=30)


@pytest.mark.parametrize("path", sorted(REQUEST_BODIES))
def test_fuzz_a_post_route_from_the_openapi_document(server, path):
    fuzz_route(server.url, path, REAL_CASES if path in CHAT_ROUTES else CASES)
