"""The HTTP surface in-process: the real app (`create_app`), middleware and routes, over the fake
engine (tests/fake_engine.py). Shapes, error bodies (OpenAI and Anthropic), limits, the queue
and give-back on a client that leaves; what needs real decoding stays in tests/integration."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from localgw.server.limits import Limits
from tests.fake_engine import REPLY, FakeRunner
from tests.helpers import assert_openai_error
from tests.integration.test_errors import CASES as BAD_INPUT

ANTHROPIC = {"anthropic-version": "2023-06-01"}


def _model(app) -> str:
    return app.state.manager.preload[0]


def chat_body(app, content="Say hello.", **extra) -> dict:
    return {"model": _model(app), "messages": [{"role": "user", "content": content}], **extra}


def sse_data(text: str) -> list:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def _released(app) -> bool:
    entry = app.state.manager.loaded.get(_model(app))
    return not app.state.manager.pinned(_model(app)) and (entry is None or entry.active == 0)


# ---- shapes -------------------------------------------------------------------------------------
async def test_chat_completion_shape(gateway):
    client, app = gateway()
    resp = await client.post("/v1/chat/completions", json=chat_body(app))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion" and body["model"] == _model(app)
    assert body["id"].startswith("chatcmpl") and isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == REPLY
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == len(REPLY)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert resp.headers["x-request-id"] and _released(app)


async def test_chat_completion_stream_shape(gateway):
    client, app = gateway()
    resp = await client.post("/v1/chat/completions", json=chat_body(
        app, stream=True, max_tokens=4, stream_options={"include_usage": True}))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    frames = sse_data(resp.text)
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == REPLY[:4]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert _released(app)


async def test_text_completion_shapes(gateway):
    client, app = gateway()
    resp = await client.post("/v1/completions", json={"model": _model(app), "prompt": "Hi",
                                                      "max_tokens": 3, "echo": True})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "Hi" + REPLY[:3]
    resp = await client.post("/v1/completions", json={"model": _model(app), "prompt": "Hi",
                                                      "stream": True})
    frames = sse_data(resp.text)
    assert frames[-1] == "[DONE]"
    assert "".join(json.loads(f)["choices"][0]["text"] for f in frames[:-1]) == REPLY
    assert _released(app)


async def test_anthropic_messages_shapes(gateway):
    client, app = gateway()
    body = {"model": _model(app), "max_tokens": 5,
            "messages": [{"role": "user", "content": "Say hello."}]}
    resp = await client.post("/v1/messages", json=body, headers=ANTHROPIC)
    assert resp.status_code == 200, resp.text
    message = resp.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": REPLY[:5]}]
    assert message["stop_reason"] == "max_tokens" and message["usage"]["output_tokens"] == 5
    resp = await client.post("/v1/messages", json=dict(body, stream=True), headers=ANTHROPIC)
    names = [line[7:] for line in resp.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "[DONE]" not in resp.text and _released(app)


async def test_count_tokens_is_the_rendered_prompt(gateway):
    client, app = gateway()
    body = {"model": _model(app), "messages": [{"role": "user", "content": "Say hello."}]}
    resp = await client.post("/v1/messages/count_tokens", json=body, headers=ANTHROPIC)
    assert resp.status_code == 200, resp.text
    counted = resp.json()["input_tokens"]
    chat = await client.post("/v1/chat/completions", json=chat_body(app))
    assert counted == chat.json()["usage"]["prompt_tokens"] and _released(app)


async def test_responses_shape(gateway):
    client, app = gateway()
    resp = await client.post("/v1/responses", json={"model": _model(app), "input": "Hi",
                                                    "max_output_tokens": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "response" and body["status"] == "incomplete"
    assert body["output"][0]["content"][0]["text"] == REPLY[:5]


async def test_models_and_health(gateway):
    client, app = gateway()
    models = (await client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == [_model(app)]
    assert (await client.get(f"/v1/models/{_model(app)}")).json()["id"] == _model(app)
    health = (await client.get("/health")).json()
    assert health["status"] == "ok" and health["available"] == [_model(app)]


async def test_a_finished_request_is_in_the_metrics(gateway):
    client, app = gateway()
    resp = await client.post("/v1/chat/completions", json=chat_body(app, max_tokens=4),
                             headers={"X-Request-ID": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    text = (await client.get("/metrics")).text
    assert 'localgw_requests_total{route="/v1/chat/completions",status="200"} 1.0' in text
    assert "localgw_completion_tokens_total 4.0" in text
    assert "localgw_time_to_first_token_seconds_count 1.0" in text


# ---- errors -------------------------------------------------------------------------------------
async def test_unknown_model_is_a_404_in_each_shape(gateway):
    client, app = gateway()
    resp = await client.post("/v1/chat/completions", json=dict(chat_body(app), model="nope"))
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["type"] == "model_not_found" and error["code"] == "model_not_found"
    assert error["param"] == "model" and "nope" in error["message"]
    resp = await client.post("/v1/messages", headers=ANTHROPIC, json={
        "model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 404
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "nope" in body["error"]["message"]
    assert (await client.get("/v1/models/nope")).status_code == 404


@pytest.mark.parametrize("name,method,path,kwargs,status,type_,code,param", BAD_INPUT,
                         ids=[c[0] for c in BAD_INPUT])
async def test_bad_input(gateway, name, method, path, kwargs, status, type_, code, param):
    """tests/integration/test_errors.py's cases, in-process (its MODEL_ID is the fake's too)."""
    client, app = gateway()
    if method == "GET":
        resp = await client.get(path)
    elif "raw" in kwargs:
        resp = await client.post(path, content=kwargs["raw"], headers=kwargs.get(
            "headers", {"content-type": "application/json"}))
    else:
        resp = await client.post(path, json=kwargs["body"])
    assert_openai_error(resp, status, type_, code, param)


async def test_validation_errors_are_400s(gateway):
    client, app = gateway()
    resp = await client.post("/v1/chat/completions", json={"model": _model(app)})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "messages"
    assert error["message"] == "missing required parameter 'messages'"
    resp = await client.post("/v1/chat/completions", content=b"{not json",
                             headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]["message"]
    resp = await client.post("/v1/messages", headers=ANTHROPIC,
                             json={"model": _model(app), "messages": []})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert app.state.manager.loaded == {}  # nothing was loaded for a bad request


async def test_limits_are_400s_before_the_model(gateway):
    client, app = gateway(limits=Limits(max_messages=1, max_prompts=1))
    body = chat_body(app)
    body["messages"] *= 2
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "limit_exceeded" and "max_messages" in error["message"]
    resp = await client.post("/v1/completions", json={"model": _model(app), "prompt": ["a", "b"]})
    assert resp.status_code == 400 and "max_prompts" in resp.json()["error"]["message"]
    assert app.state.manager.loaded == {}


async def test_a_prompt_past_the_context_is_a_400(gateway):
    client, app = gateway()
    resp = await client.post("/v1/chat/completions", json=chat_body(app, "x" * 1000))
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded" and _released(app)


async def test_a_full_queue_is_a_429_with_retry_after(gateway):
    class Full(FakeRunner):
        queue_full = True

    client, app = gateway(Full)
    resp = await client.post("/v1/chat/completions", json=chat_body(app))
    assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
    assert resp.json()["error"]["type"] == "rate_limit_error" and _released(app)
    resp = await client.post("/v1/messages", headers=ANTHROPIC, json={
        "model": _model(app), "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 429 and resp.json()["error"]["type"] == "rate_limit_error"


async def test_a_failure_mid_stream_is_an_error_frame(gateway):
    class Failing(FakeRunner):
        fail_with = RuntimeError("boom")

    client, app = gateway(Failing)
    resp = await client.post("/v1/chat/completions", json=chat_body(app, stream=True))
    frames = sse_data(resp.text)
    assert frames[-1] == "[DONE]" and "generation failed: boom" in frames[-2]
    resp = await client.post("/v1/chat/completions", json=chat_body(app))
    assert resp.status_code == 500 and "boom" in resp.json()["error"]["message"]
    assert _released(app)


# ---- a client that leaves -----------------------------------------------------------------------
async def _asgi(app, path: str, body: dict, leave: asyncio.Event) -> list[dict]:
    """One request straight through ASGI; its client disconnects when `leave` is set."""
    data = json.dumps(body).encode()
    sent, messages = [], [{"type": "http.request", "body": data, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080),
             "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json")]}
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_leaves_gives_everything_back(gateway, stream):
    class Slow(FakeRunner):
        delay = 0.02

    _, app = gateway(Slow)
    leave = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, leave.set)
    sent = await asyncio.wait_for(_asgi(app, "/v1/chat/completions",
                                        chat_body(app, stream=stream), leave), 5)
    runner = app.state.manager.loaded[_model(app)].runner
    assert runner.generations[0].cancelled and _released(app)
    if not stream:
        assert sent[0]["status"] == 499


async def test_a_client_that_leaves_while_its_model_loads_gives_it_back(gateway):
    class SlowLoad(FakeRunner):
        def __init__(self, *args):
            time.sleep(0.3)
            super().__init__(*args)

    _, app = gateway(SlowLoad)
    leave = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, leave.set)
    sent = await _asgi(app, "/v1/messages/count_tokens", {
        "model": _model(app), "messages": [{"role": "user", "content": "hi"}]}, leave)
    assert sent[0]["status"] == 499 and not app.state.manager.pinned(_model(app))
