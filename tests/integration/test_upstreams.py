"""Upstreams with real processes: a second `localgw serve` (real model, its own API key) behind a
gateway, plus fault-injecting upstreams (tests/upstream_faults.py) for every way one can fail.

Only one server decodes at a time: the tests run in order, each waiting for its answer.
The gateway's own model is loaded, but decodes only in the test that checks it still serves.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.helpers import ServerProcess, smollm2_path, wait_until
from tests.integration.conftest import EOS_BAN, HUB_STYLE_ID, MODEL_ID
from tests.upstream_faults import ERROR_MESSAGE, SLOW, FaultUpstream

pytestmark = pytest.mark.integration

UPSTREAM_KEY = "upstream-key-3f9a1c"
GATEWAY_KEY = "gateway-key-77b2e0"
REMOTE = HUB_STYLE_ID  # the upstream knows the model by its hub-style id; the gateway's is MODEL_ID


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    home = tmp_path_factory.mktemp("upstream-home")
    subprocess.run([sys.executable, "-m", "localgw", "import", str(smollm2_path()), "--id", REMOTE],
                   check=True, env={"LOCALGW_HOME": str(home), "PATH": "/usr/bin:/bin"},
                   capture_output=True)
    proc = ServerProcess("--model", REMOTE, "--api-key", UPSTREAM_KEY, home=home)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def faults():
    servers = {"faults": FaultUpstream(["fault/ok", "fault/dies", "fault/hangs", "fault/500",
                                        "fault/garbage", "fault/garbage-later", "fault/failover",
                                        MODEL_ID]),
               "doomed": FaultUpstream(["fault/failover"]),
               "narrow": FaultUpstream(["fault/slow", "fault/hidden"])}
    yield servers
    for s in servers.values():
        s.stop()


@pytest.fixture(scope="module")
def gateway(upstream, faults, tmp_path_factory):
    home = tmp_path_factory.mktemp("gateway-home")
    (home / "upstreams.toml").write_text(f'''
[[upstream]]
name = "box"
url = "{upstream.url}/v1"
api_key_env = "BOX_KEY"
timeout = "30s"

[[upstream]]
name = "doomed"
url = "{faults['doomed'].url}"

[[upstream]]
name = "faults"
url = "{faults['faults'].url}"
timeout = "1s"

[[upstream]]
name = "narrow"
url = "{faults['narrow'].url}"
models = ["fault/slow"]
max_concurrency = 1
''')
    proc = ServerProcess("--model", str(smollm2_path()), "--api-key", GATEWAY_KEY, home=home,
                         env={"BOX_KEY": UPSTREAM_KEY})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gw(gateway):
    with httpx.Client(base_url=gateway.url, timeout=60,
                      headers={"Authorization": f"Bearer {GATEWAY_KEY}"}) as c:
        yield c


@pytest.fixture(scope="module")
def direct(upstream):
    with httpx.Client(base_url=upstream.url, timeout=60,
                      headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}) as c:
        yield c


def chat(model=REMOTE, **extra):
    return {"model": model, "messages": [{"role": "user", "content": "Say hello."}],
            "temperature": 0, "max_tokens": 8, **extra}


def sse_frames(response) -> list[tuple[float, str]]:
    return [(time.perf_counter(), line[6:]) for line in response.iter_lines()
            if line.startswith("data: ")]


# ---- listing -----------------------------------------------------------------------------------
def test_models_are_listed_with_their_source(gw):
    data = {m["id"]: m for m in gw.get("/v1/models").json()["data"]}
    assert "upstream" not in data[MODEL_ID]  # local, and it wins the clash with faults' copy
    assert data[REMOTE]["owned_by"] == "box" and data[REMOTE]["upstream"] == "box"
    assert data[REMOTE]["context_length"] > 0  # the upstream's own fields are kept
    assert data[f"faults/{MODEL_ID}"]["upstream"] == "faults"
    assert data["fault/failover"]["upstream"] == "doomed"  # first in the config, one entry
    assert data["fault/slow"]["upstream"] == "narrow" and "fault/hidden" not in data  # allow-list
    one = gw.get(f"/v1/models/{REMOTE}").json()
    assert one["id"] == REMOTE and one["upstream"] == "box"


def test_health_and_ps_show_each_upstream(gw, gateway):
    upstreams = {u["name"]: u for u in gw.get("/health").json()["upstreams"]}
    assert upstreams["box"]["reachable"] is True and upstreams["box"]["models"] == [REMOTE]
    assert upstreams["box"]["in_flight"] == 0 and upstreams["box"]["last_error"] is None
    assert upstreams["narrow"]["max_concurrency"] == 1
    ps = subprocess.run([sys.executable, "-m", "localgw", "ps", "--url", gateway.url],
                        capture_output=True, text=True, env={"LOCALGW_API_KEY": GATEWAY_KEY,
                                                             "PATH": "/usr/bin:/bin",
                                                             "COLUMNS": "200"})
    assert ps.returncode == 0, ps.stderr
    rows = {line.split()[0]: line for line in ps.stdout.splitlines() if line.strip()}
    assert "UPSTREAM" in rows and REMOTE in rows["box"] and " yes " in rows["box"]
    assert "0/1" in rows["narrow"]


# ---- forwarding a real model -----------------------------------------------------------------
def test_chat_through_the_gateway_is_the_upstreams_answer(gw, direct):
    want = direct.post("/v1/chat/completions", json=chat()).json()
    got = gw.post("/v1/chat/completions", json=chat())
    assert got.status_code == 200
    body = got.json()
    assert body["model"] == REMOTE and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == want["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == want["usage"]["completion_tokens"]


def test_completions_streamed_and_not(gw, direct):
    req = {"model": REMOTE, "prompt": "Once upon a time", "temperature": 0, "max_tokens": 8}
    want = direct.post("/v1/completions", json=req).json()["choices"][0]["text"]
    assert gw.post("/v1/completions", json=req).json()["choices"][0]["text"] == want
    with gw.stream("POST", "/v1/completions", json=dict(req, stream=True)) as resp:
        frames = [f for _, f in sse_frames(resp)]
    assert frames[-1] == "[DONE]"
    assert "".join(json.loads(f)["choices"][0]["text"] for f in frames[:-1]) == want


def test_stream_arrives_as_it_is_decoded(gw):
    body = chat(max_tokens=48, logit_bias=EOS_BAN, stream=True,
                stream_options={"include_usage": True})
    with gw.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        frames = sse_frames(resp)
    assert frames[-1][1] == "[DONE]"
    chunks = [json.loads(f) for _, f in frames[:-1]]
    content = [t for (t, _), c in zip(frames, chunks) if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) >= 40
    # 48 tokens decode over a few hundred ms; a buffered stream would arrive all at once
    assert content[-1] - content[0] > 0.15
    assert chunks[-1]["usage"]["completion_tokens"] == 48
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"


def test_client_leaving_frees_the_upstream_at_once(gw, direct):
    body = chat(max_tokens=2000, logit_bias=EOS_BAN, stream=True)
    with gw.stream("POST", "/v1/chat/completions", json=body) as resp:
        lines = resp.iter_lines()
        got = 0
        for line in lines:
            got += line.startswith("data: {")
            if got == 3:
                break
        assert direct.get("/health").json()["models"][0]["active_requests"] == 1
    left = time.perf_counter()
    assert wait_until(lambda: direct.get("/health").json()["models"][0]["active_requests"] == 0, 1.0)
    assert time.perf_counter() - left < 1.0
    assert wait_until(lambda: gw.get("/health").json()["upstreams"][0]["in_flight"] == 0, 1.0)


def test_non_streaming_client_leaving_frees_the_upstream(gateway, direct):
    body = chat(max_tokens=2000, logit_bias=EOS_BAN)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=0.5,
                   headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    assert wait_until(lambda: direct.get("/health").json()["models"][0]["active_requests"] == 0, 1.0)


def test_the_upstreams_own_4xx_keeps_its_status_and_message(gw, direct):
    bad = chat(temperature=5)
    want = direct.post("/v1/chat/completions", json=bad)
    got = gw.post("/v1/chat/completions", json=bad)
    assert want.status_code == got.status_code == 400
    assert got.json()["error"]["message"] == want.json()["error"]["message"]
    assert got.json()["error"]["param"] == "temperature"


def test_keys(gw, direct, upstream, faults):
    # the upstream wants its key; the gateway sends it, from BOX_KEY
    assert httpx.post(upstream.url + "/v1/chat/completions", json=chat()).status_code == 401
    assert gw.post("/v1/chat/completions", json=chat(max_tokens=1)).status_code == 200
    # the client's key for the gateway never goes on, and box's key goes to box only
    faults_server = faults["faults"]
    assert gw.post("/v1/chat/completions", json=chat("fault/ok"),
                   headers={"x-api-key": GATEWAY_KEY}).status_code == 200
    sent = faults_server.last("fault/ok")["headers"]
    assert "authorization" not in sent and "x-api-key" not in sent
    assert GATEWAY_KEY not in json.dumps(sent) and UPSTREAM_KEY not in json.dumps(sent)


def test_metrics_per_upstream(gw):
    text = gw.get("/metrics").text
    assert re.search(r'^localgw_upstream_requests_total\{status="200",upstream="box"\} [1-9]', text, re.M)
    assert re.search(r'^localgw_upstream_bytes_total\{direction="received",upstream="box"\} [1-9]', text, re.M)
    assert 'localgw_upstream_response_seconds_count{upstream="box"}' in text
    assert 'localgw_upstream_in_flight{upstream="box"} 0.0' in text


def test_anthropic_messages_for_the_upstreams_model(gw, direct):
    """/v1/messages translates at the door and runs on the upstream through start_chat."""
    want = direct.post("/v1/chat/completions", json=chat()).json()["choices"][0]
    body = {"model": REMOTE, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}]}
    headers = {"x-api-key": GATEWAY_KEY, "anthropic-version": "2023-06-01"}
    got = gw.post("/v1/messages", json=body, headers=headers)
    assert got.status_code == 200, got.text
    message = got.json()
    assert message["type"] == "message" and message["model"] == REMOTE
    assert "".join(b["text"] for b in message["content"] if b["type"] == "text") \
        == want["message"]["content"]
    assert message["stop_reason"] == {"length": "max_tokens", "stop": "end_turn"}[want["finish_reason"]]
    assert message["usage"]["output_tokens"] > 0
    with gw.stream("POST", "/v1/messages", json=dict(body, stream=True), headers=headers) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta"
                   and e["delta"]["type"] == "text_delta") == want["message"]["content"]


async def test_start_chat_runs_an_upstream_model(upstream, direct, tmp_path, monkeypatch):
    """The seam /v1/messages and /v1/responses use: a ChatCall whose chunks come from upstream."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from localgw.chat.requests import ChatRequest, parse_body
    from localgw.server import routes
    from localgw.server.app import create_app
    from localgw.server.settings import ServerSettings
    from localgw.upstreams.config import UpstreamConfig

    monkeypatch.setenv("LOCALGW_HOME", str(tmp_path))
    monkeypatch.setenv("BOX_KEY", UPSTREAM_KEY)
    app = create_app(ServerSettings(upstreams=[UpstreamConfig("box", upstream.url + "/v1",
                                                              api_key_env="BOX_KEY")]))

    async def front_door(request):
        call = await routes.start_chat(request, parse_body(ChatRequest, await request.body()))
        try:
            chunks = [c async for c in call.chunks]
        finally:
            await call.close()
        return JSONResponse({"id": call.id, "model": call.model, "chunks": chunks,
                             "usage": call.usage.to_dict()})

    app.router.routes.append(Route("/test/start_chat", front_door, methods=["POST"]))
    await app.state.upstreams.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1", timeout=60) as c:
            got = (await c.post("/test/start_chat", json=chat(logit_bias=EOS_BAN))).json()
    finally:
        await app.state.upstreams.close()
    want = direct.post("/v1/chat/completions", json=chat(logit_bias=EOS_BAN)).json()
    chunks = got["chunks"]
    assert {c["id"] for c in chunks} == {got["id"]} and {c["model"] for c in chunks} == {REMOTE}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) \
        == want["choices"][0]["message"]["content"]
    assert got["usage"]["completion_tokens"] == 8 and got["usage"]["prompt_tokens"] > 0


# ---- faults ---------------------------------------------------------------------------------------
def test_clashing_id_is_asked_for_by_its_own_name(gw, faults):
    resp = gw.post("/v1/chat/completions", json=chat(f"faults/{MODEL_ID}"))
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "ok"
    assert faults["faults"].last(MODEL_ID)["body"]["messages"] == chat()["messages"]


def test_dies_mid_stream_error_frame_then_done(gw):
    with gw.stream("POST", "/v1/chat/completions", json=chat("fault/dies", stream=True)) as resp:
        assert resp.status_code == 200
        frames = [f for _, f in sse_frames(resp)]
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert error["type"] == "upstream_error" and error["message"].startswith("upstream faults (")
    chunks = [json.loads(f) for f in frames[:-2]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hel"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)  # none made up


@pytest.mark.parametrize("stream", [False, True])
def test_hangs_past_the_timeout_is_a_502(gw, stream):
    start = time.perf_counter()
    resp = gw.post("/v1/chat/completions", json=chat("fault/hangs", stream=stream))
    assert time.perf_counter() - start < 5
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert error["type"] == error["code"] == "upstream_error"
    assert error["message"].startswith("upstream faults (http://127.0.0.1:") and "1s" in error["message"]


def test_500_keeps_the_upstreams_message(gw):
    resp = gw.post("/v1/chat/completions", json=chat("fault/500"))
    assert resp.status_code == 502
    assert resp.json()["error"]["type"] == "upstream_error"
    assert ERROR_MESSAGE in resp.json()["error"]["message"]


def test_garbage_sse(gw):
    resp = gw.post("/v1/chat/completions", json=chat("fault/garbage", stream=True))
    assert resp.status_code == 502 and "not SSE" in resp.json()["error"]["message"]
    with gw.stream("POST", "/v1/chat/completions", json=chat("fault/garbage-later", stream=True)) as resp:
        assert resp.status_code == 200
        frames = [f for _, f in sse_frames(resp)]
    assert frames[-1] == "[DONE]" and "not SSE" in json.loads(frames[-2])["error"]["message"]


def test_max_concurrency_is_a_429(gw, gateway):
    first = {}
    worker = threading.Thread(target=lambda: first.setdefault(
        "status", gw.post("/v1/chat/completions", json=chat("fault/slow")).status_code))
    worker.start()
    assert wait_until(lambda: gw.get("/health").json()["upstreams"][3]["in_flight"] == 1, SLOW)
    second = gw.post("/v1/chat/completions", json=chat("fault/slow"))
    worker.join()
    assert first["status"] == 200
    assert second.status_code == 429 and second.json()["error"]["code"] == "queue_full"
    assert second.headers["retry-after"]


def test_client_leaving_before_the_first_event_closes_the_upstream_request(gateway, gw):
    # fault/slow answers after SLOW s; a client that gives up first must not hold the slot
    with pytest.raises(httpx.TimeoutException):
        httpx.post(gateway.url + "/v1/chat/completions", json=chat("fault/slow", stream=True),
                   timeout=0.3, headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    left = time.perf_counter()
    assert wait_until(lambda: gw.get("/health").json()["upstreams"][3]["in_flight"] == 0, SLOW)
    assert time.perf_counter() - left < SLOW - 0.5


def test_failover_to_the_next_upstream(gw, faults):
    faults["doomed"].stop()  # its list was read; now it refuses connections
    before = len([r for r in faults["faults"].requests if r["body"].get("model") == "fault/failover"])
    resp = gw.post("/v1/chat/completions", json=chat("fault/failover", stream=True))
    assert resp.status_code == 200 and resp.text.rstrip().endswith("data: [DONE]")
    after = len([r for r in faults["faults"].requests if r["body"].get("model") == "fault/failover"])
    assert after == before + 1
    doomed = gw.get("/health").json()["upstreams"][1]
    assert doomed["reachable"] is False and "cannot connect" in doomed["last_error"]


def test_upstream_stopped_is_a_502_and_local_models_keep_serving(gw, upstream, gateway):
    upstream.stop()
    for stream in (False, True):
        start = time.perf_counter()
        resp = gw.post("/v1/chat/completions", json=chat(stream=stream))
        assert time.perf_counter() - start < 5
        assert resp.status_code == 502
        assert resp.json()["error"]["message"].startswith(f"upstream box ({upstream.url}/v1)")
    local = gw.post("/v1/chat/completions", json=chat(MODEL_ID, max_tokens=2))
    assert local.status_code == 200 and local.json()["model"] == MODEL_ID
    assert gw.get("/health").json()["upstreams"][0]["reachable"] is False
    assert REMOTE in {m["id"] for m in gw.get("/v1/models").json()["data"]}  # still listed


def test_keys_never_reach_the_log(gateway):
    assert UPSTREAM_KEY not in gateway.output and GATEWAY_KEY not in gateway.output
