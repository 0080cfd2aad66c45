"""Request ids, metrics, CORS, the browser guard and the API key, in-process over the fake engine
(tests/fake_engine.py): the real app and middleware, settings made by `localgw serve`'s own
option parsing where the options are the point. What needs a real model or a real process stays
in tests/integration (test_http_surface, test_guarded_server)."""

from __future__ import annotations

import json
import re

import pytest

from localgw.server.settings import ServerSettings
from tests.fake_engine import REPLY
from tests.helpers import ThreadServer

KEY = "sk-local-test-key"


def serve_settings(monkeypatch, home, *args: str) -> ServerSettings:
    """The settings `localgw serve ARGS` would run a server with (none is started)."""
    from typer.testing import CliRunner

    from localgw.cli import serve
    from localgw.cli.app import app

    got: list[ServerSettings] = []
    monkeypatch.setenv("LOCALGW_HOME", str(home))
    monkeypatch.setattr(serve, "run_server", got.append)
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 0, result.output
    return got[0]


def chat_body(app, content="Say hello.", **extra) -> dict:
    return {"model": app.state.manager.preload[0],
            "messages": [{"role": "user", "content": content}], **extra}


def _generated(text: str) -> float:
    found = re.search(r"^localgw_completion_tokens_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


# ---- request ids, metrics, CORS ----------------------------------------------------------------
async def test_request_id_echoed_or_made(gateway):
    client, app = gateway()
    resp = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    made = (await client.post("/v1/chat/completions",
                              json=chat_body(app, max_tokens=1))).headers["x-request-id"]
    assert made.startswith("req_")
    resp = await client.get("/health", headers={"X-Request-ID": "bad id <script>"})
    assert resp.headers["x-request-id"].startswith("req_")


async def test_metrics_are_prometheus_text(gateway):
    client, app = gateway()
    await client.post("/v1/chat/completions", json=chat_body(app, max_tokens=4))
    text = (await client.get("/metrics")).text
    for name in ["localgw_requests_total", "localgw_prompt_tokens_total",
                 "localgw_completion_tokens_total", "localgw_time_to_first_token_seconds_bucket",
                 "localgw_decode_tokens_per_second_bucket", "localgw_queue_depth",
                 "localgw_loaded_models"]:
        assert name in text
    assert re.search(r'localgw_requests_total\{route="/v1/chat/completions",status="200"\} [1-9]', text)
    assert re.search(r"^localgw_loaded_models 1\.0$", text, re.M)


async def test_metrics_count_the_embedding_routes_by_name(gateway):
    client, _ = gateway()
    assert (await client.post("/v1/embeddings", json={"model": "nope", "input": "a"})).status_code == 404
    for path in ("/v1/rerank", "/rerank"):
        assert (await client.post(path, json={"model": "nope", "query": "q"})).status_code == 400
    text = (await client.get("/metrics")).text
    assert 'localgw_requests_total{route="/v1/embeddings",status="404"} 1.0' in text
    assert 'localgw_requests_total{route="/v1/rerank",status="400"} 1.0' in text
    assert 'localgw_requests_total{route="/rerank",status="400"} 1.0' in text
    assert 'route="other"' not in text


async def test_cors_allows_localhost_origins_only(gateway):
    client, _ = gateway()
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = await client.options("/v1/chat/completions",
                              headers={"Origin": "http://localhost:3000", **pre})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    bad = await client.options("/v1/chat/completions",
                               headers={"Origin": "https://evil.example", **pre})
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers


async def test_a_web_page_cannot_drive_the_server(gateway):
    """A cross-site page's requests: a simple POST (text/plain, no preflight), a JSON POST with a
    foreign Origin, and a DNS-rebinding request (foreign Host): each refused before it runs."""
    client, app = gateway()
    before = _generated((await client.get("/metrics")).text)
    body = json.dumps(chat_body(app, max_tokens=4)).encode()
    simple = await client.post("/v1/chat/completions", content=body,
                               headers={"Content-Type": "text/plain;charset=UTF-8",
                                        "Origin": "http://localhost:3000"})
    assert simple.status_code == 415 and simple.json()["error"]["code"] == "unsupported_media_type"
    foreign = await client.post("/v1/chat/completions", json=chat_body(app, max_tokens=4),
                                headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "--cors-origins" in foreign.json()["error"]["message"]
    rebound = await client.post("/v1/chat/completions", json=chat_body(app, max_tokens=4),
                                headers={"Host": "rebind.evil:8000"})
    assert rebound.status_code == 403 and "--allowed-hosts" in rebound.json()["error"]["message"]
    assert (await client.get("/v1/models", headers={"Host": "rebind.evil:8000"})).status_code == 403
    assert (await client.get("/health", headers={"Host": "rebind.evil:8000"})).status_code == 403
    anthropic = await client.post("/v1/messages", content=b"{}",
                                  headers={"Content-Type": "text/plain"})
    assert anthropic.status_code == 415 and anthropic.json()["type"] == "error"
    assert _generated((await client.get("/metrics")).text) == before
    assert app.state.manager.loaded == {}  # nothing was loaded for a refused request
    # the same requests from the server's own names and a local page are served
    for host in ("localhost:8080", "127.0.0.1:8080"):
        resp = await client.post("/v1/chat/completions", json=chat_body(app, max_tokens=2),
                                 headers={"Host": host, "Origin": "http://localhost:3000"})
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_allowed_hosts_and_cors_origins_let_more_in(gateway, monkeypatch, tmp_path):
    settings = serve_settings(monkeypatch, tmp_path, "--allowed-hosts", "llm.example.com",
                              "--cors-origins", "https://app.example.com,https://other.example",
                              "--parallel", "1")
    client, app = gateway(settings=settings)
    resp = await client.post("/v1/chat/completions", json=chat_body(app, max_tokens=2),
                             headers={"Host": "llm.example.com:8000",
                                      "Origin": "https://app.example.com"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "https://app.example.com"
    pre = await client.options("/v1/chat/completions", headers={
        "Origin": "https://other.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"})
    assert pre.status_code == 200
    assert (await client.get("/health", headers={"Host": "rebind.evil"})).status_code == 403
    assert (await client.get("/health", headers={"Origin": "https://evil.example"})).status_code == 403


# ---- the API key ------------------------------------------------------------------------------
@pytest.fixture
async def guarded(gateway, monkeypatch, tmp_path):
    """The app as `serve --api-key KEY` makes it."""
    return gateway(settings=serve_settings(monkeypatch, tmp_path, "--api-key", KEY))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"x-api-key": "nope"},
                                     {"Authorization": KEY}])
async def test_wrong_or_missing_key_is_401(guarded, headers):
    client, app = guarded
    resp = await client.post("/v1/chat/completions", json=chat_body(app), headers=headers)
    assert resp.status_code == 401
    err = resp.json()["error"]
    assert err["type"] == "authentication_error" and err["message"] == "missing or invalid API key"
    assert (await client.get("/v1/models", headers=headers)).status_code == 401
    assert app.state.manager.loaded == {}


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}])
async def test_right_key_either_header(guarded, headers):
    client, app = guarded
    headers["OpenAI-Organization"] = "org-ignored"
    resp = await client.post("/v1/chat/completions", json=chat_body(app, max_tokens=2),
                             headers=headers)
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == REPLY[:2]


@pytest.mark.parametrize("headers,status", [
    ({"Host": "rebind.evil"}, 403), ({"Origin": "https://evil.example"}, 403),
    ({"Content-Type": "text/plain"}, 415)])
async def test_browser_checks_hold_with_a_key_too(guarded, headers, status):
    client, _ = guarded
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    resp = await client.post("/v1/chat/completions", content=b"{}", headers={**auth, **headers})
    assert resp.status_code == status
    anonymous = {k: v for k, v in {**auth, **headers}.items() if k != "Authorization"}
    resp = await client.post("/v1/chat/completions", content=b"{}", headers=anonymous)
    assert resp.status_code == status


async def test_health_is_public(guarded):
    client, _ = guarded
    assert (await client.get("/health")).json()["status"] == "ok"


# ---- a bug in a route, over real sockets --------------------------------------------------------
def test_a_bug_in_a_route_is_its_own_500_and_the_connection_lives_on(monkeypatch, tmp_path):
    import httpx

    from localgw.server import routes
    from tests.fake_engine import fake_manager

    def broken(*args, **kwargs):
        raise RuntimeError("injected bug in a route")

    monkeypatch.setattr(routes, "model_object", broken)
    settings = ServerSettings()
    with ThreadServer(settings, fake_manager(tmp_path)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        for _ in range(3):  # the same kept-alive connection each time
            resp = http.get("/v1/models")
            assert resp.status_code == 500
            assert "injected bug" in resp.json()["error"]["message"]
            assert http.get("/health").status_code == 200
        assert 'status="500"' in http.get("/metrics").text
