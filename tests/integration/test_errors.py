"""Bad input gets the right status and OpenAI error shape, and the server keeps serving.

Every case in CASES runs in-process over the fake engine (tests/unit/test_routes_fake.py); here,
against the real server, run those whose answer comes from the real model (its tokenizer and
context, its vocabulary) or from the real HTTP server (a body past the limit on a socket)."""

import pytest

from tests.helpers import assert_openai_error
from tests.integration.conftest import MODEL_ID, chat_body

MSG = [{"role": "user", "content": "hi"}]
LONG = "word " * 9000  # far past the 8,192-token context


def post(http, path, body=None, raw=None, headers=None):
    if raw is not None:
        return http.post(path, content=raw, headers=headers or {"content-type": "application/json"})
    return http.post(path, json=body, headers=headers)


CASES = [
    # (name, method, path, kwargs, status, type, code, param)
    ("malformed json", "POST", "/v1/chat/completions", {"raw": b"{nope"}, 400, "invalid_request_error", None, None),
    ("empty body", "POST", "/v1/chat/completions", {"raw": b""}, 400, "invalid_request_error", None, None),
    ("array body", "POST", "/v1/chat/completions", {"raw": b"[]"}, 400, "invalid_request_error", None, None),
    ("form content type", "POST", "/v1/chat/completions",
     {"raw": b"model=x", "headers": {"content-type": "application/x-www-form-urlencoded"}},
     415, "invalid_request_error", "unsupported_media_type", None),
    ("text/plain JSON (a browser's simple request)", "POST", "/v1/chat/completions",
     {"raw": b'{"model": "x", "messages": []}', "headers": {"content-type": "text/plain;charset=UTF-8"}},
     415, "invalid_request_error", "unsupported_media_type", None),
    ("no content type", "POST", "/v1/chat/completions",
     {"raw": b'{"model": "x", "messages": []}', "headers": {"accept": "*/*"}},
     415, "invalid_request_error", "unsupported_media_type", None),
    ("missing model", "POST", "/v1/chat/completions", {"body": {"messages": MSG}}, 400, "invalid_request_error", None, "model"),
    ("missing messages", "POST", "/v1/chat/completions", {"body": {"model": MODEL_ID}}, 400, "invalid_request_error", None, "messages"),
    ("empty messages", "POST", "/v1/chat/completions", {"body": {"model": MODEL_ID, "messages": []}}, 400, "invalid_request_error", None, "messages"),
    ("unknown model", "POST", "/v1/chat/completions", {"body": {"model": "no/such-model", "messages": MSG}}, 404, "model_not_found", "model_not_found", "model"),
    ("unknown role", "POST", "/v1/chat/completions", {"body": {"model": MODEL_ID, "messages": [{"role": "robot", "content": "x"}]}}, 400, "invalid_request_error", None, "messages[0].role"),
    ("content wrong type", "POST", "/v1/chat/completions", {"body": {"model": MODEL_ID, "messages": [{"role": "user", "content": 5}]}}, 400, "invalid_request_error", None, None),
    ("user without content", "POST", "/v1/chat/completions", {"body": {"model": MODEL_ID, "messages": [{"role": "user"}]}}, 400, "invalid_request_error", None, "messages[0].content"),
    ("image part", "POST", "/v1/chat/completions", {"body": {"model": MODEL_ID, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}}, 400, "invalid_request_error", None, None),
    ("temperature too high", "POST", "/v1/chat/completions", {"body": chat_body(temperature=5)}, 400, "invalid_request_error", None, "temperature"),
    ("temperature string", "POST", "/v1/chat/completions", {"body": chat_body(temperature="0.5")}, 400, "invalid_request_error", None, "temperature"),
    ("top_p negative", "POST", "/v1/chat/completions", {"body": chat_body(top_p=-0.1)}, 400, "invalid_request_error", None, "top_p"),
    ("n too big", "POST", "/v1/chat/completions", {"body": chat_body(n=20)}, 400, "invalid_request_error", None, "n"),
    ("max_tokens zero", "POST", "/v1/chat/completions", {"body": chat_body(max_tokens=0)}, 400, "invalid_request_error", None, "max_tokens"),
    ("stream not bool", "POST", "/v1/chat/completions", {"body": chat_body(stream="yes")}, 400, "invalid_request_error", None, "stream"),
    ("too many stops", "POST", "/v1/chat/completions", {"body": chat_body(stop=[str(i) for i in range(17)])}, 400, "invalid_request_error", None, "stop"),
    ("top_logprobs without logprobs", "POST", "/v1/chat/completions", {"body": chat_body(top_logprobs=2)}, 400, "invalid_request_error", None, None),
    ("logit_bias outside vocab", "POST", "/v1/chat/completions", {"body": chat_body(logit_bias={"999999": 5})}, 400, "invalid_request_error", None, "logit_bias"),
    ("tool result without call", "POST", "/v1/chat/completions", {"body": {"model": MODEL_ID, "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "r"}]}}, 400, "invalid_request_error", None, "messages[1].tool_call_id"),
    ("named tool not in tools", "POST", "/v1/chat/completions", {"body": chat_body(tools=[{"type": "function", "function": {"name": "a"}}], tool_choice={"type": "function", "function": {"name": "b"}})}, 400, "invalid_request_error", None, "tool_choice.function.name"),
    ("json_schema without schema", "POST", "/v1/chat/completions", {"body": chat_body(response_format={"type": "json_schema"})}, 400, "invalid_request_error", None, None),
    ("prompt over the context", "POST", "/v1/chat/completions", {"body": chat_body(content=LONG)}, 400, "invalid_request_error", "context_length_exceeded", "messages"),
    ("completion prompt over the context", "POST", "/v1/completions", {"body": {"model": MODEL_ID, "prompt": LONG}}, 400, "invalid_request_error", "context_length_exceeded", "prompt"),
    ("completion empty prompt list", "POST", "/v1/completions", {"body": {"model": MODEL_ID, "prompt": []}}, 400, "invalid_request_error", None, "prompt"),
    ("oversize body", "POST", "/v1/chat/completions", {"raw": b"{" + b" " * (17 * 1024 * 1024) + b"}"}, 413, "invalid_request_error", "request_too_large", None),
    ("unknown model id", "GET", "/v1/models/nope/nothing", {}, 404, "model_not_found", "model_not_found", "model"),
    ("unknown path", "GET", "/v2/whatever", {}, 404, "invalid_request_error", "not_found", None),
    ("wrong method", "GET", "/v1/chat/completions", {}, 405, "invalid_request_error", "method_not_allowed", None),
]


REAL = [c for c in CASES if c[0] in ("logit_bias outside vocab", "prompt over the context",
                                      "completion prompt over the context", "oversize body")]


@pytest.mark.parametrize("name,method,path,kwargs,status,type_,code,param", REAL,
                         ids=[c[0] for c in REAL])
def test_bad_input(http, name, method, path, kwargs, status, type_, code, param):
    resp = post(http, path, **kwargs) if method == "POST" else http.get(path)
    assert_openai_error(resp, status, type_, code, param)


def test_context_error_names_the_token_counts(http):
    err = post(http, "/v1/chat/completions", chat_body(content=LONG)).json()["error"]
    assert "8192" in err["message"] and "tokens" in err["message"]


def test_server_keeps_serving_after_bad_input(http):
    for _ in range(3):
        post(http, "/v1/chat/completions", raw=b"{bad")
        post(http, "/v1/chat/completions", chat_body(content=LONG))
    resp = post(http, "/v1/chat/completions", chat_body(max_tokens=3, logit_bias={"2": -100}))
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"]
    assert http.get("/health").json()["status"] == "ok"
