"""Health, metrics, request ids and CORS."""

import json
import re

import httpx

from tests.helpers import ServerProcess, smollm2_path
from tests.integration.conftest import chat_body


def test_health(http):
    body = http.get("/health").json()
    assert body["status"] == "ok"
    assert body["models"][0]["context_length"] == 8192


def test_request_id_echoed_or_made(http):
    assert http.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = http.post("/v1/chat/completions", json=chat_body(max_tokens=1)).headers["x-request-id"]
    assert made.startswith("req_")
    assert http.get("/health", headers={"X-Request-ID": "bad id <script>"}).headers["x-request-id"].startswith("req_")


def test_metrics_are_prometheus_text(http):
    http.post("/v1/chat/completions", json=chat_body(max_tokens=4))
    text = http.get("/metrics").text
    for name in ["localgw_requests_total", "localgw_prompt_tokens_total",
                 "localgw_completion_tokens_total", "localgw_time_to_first_token_seconds_bucket",
                 "localgw_decode_tokens_per_second_bucket", "localgw_queue_depth",
                 "localgw_loaded_models"]:
        assert name in text
    assert re.search(r'localgw_requests_total\{route="/v1/chat/completions",status="200"\} [1-9]', text)
    assert re.search(r"^localgw_loaded_models 1\.0$", text, re.M)


def test_cors_allows_localhost_origins_only(http):
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = http.options("/v1/chat/completions", headers={"Origin": "http://localhost:3000", **pre})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    bad = http.options("/v1/chat/completions", headers={"Origin": "https://evil.example", **pre})
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers


def _generated(http) -> float:
    text = http.get("/metrics").text
    found = re.search(r"^localgw_completion_tokens_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_web_page_cannot_drive_the_server(http):
    """A cross-site page's requests: a simple POST (text/plain, no preflight), a JSON POST with a
    foreign Origin, and a DNS-rebinding request (foreign Host): each refused before it runs."""
    before = _generated(http)
    body = json.dumps(chat_body(max_tokens=4)).encode()
    simple = http.post("/v1/chat/completions", content=body,
                       headers={"Content-Type": "text/plain;charset=UTF-8",
                                "Origin": "http://localhost:3000"})
    assert simple.status_code == 415 and simple.json()["error"]["code"] == "unsupported_media_type"
    foreign = http.post("/v1/chat/completions", json=chat_body(max_tokens=4),
                        headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "--cors-origins" in foreign.json()["error"]["message"]
    rebound = http.post("/v1/chat/completions", json=chat_body(max_tokens=4),
                        headers={"Host": "rebind.evil:8000"})
    assert rebound.status_code == 403 and "--allowed-hosts" in rebound.json()["error"]["message"]
    assert http.get("/v1/models", headers={"Host": "rebind.evil:8000"}).status_code == 403
    assert http.get("/health", headers={"Host": "rebind.evil:8000"}).status_code == 403
    anthropic = http.post("/v1/messages", content=b"{}", headers={"Content-Type": "text/plain"})
    assert anthropic.status_code == 415 and anthropic.json()["type"] == "error"
    assert _generated(http) == before
    # the same requests from the server's own names and a local page are served
    port = http.base_url.port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        resp = http.post("/v1/chat/completions", json=chat_body(max_tokens=2),
                         headers={"Host": host, "Origin": "http://localhost:3000"})
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_allowed_hosts_and_cors_origins_let_more_in(home):
    server = ServerProcess("--model", str(smollm2_path()), "--allowed-hosts", "llm.example.com",
                           "--cors-origins", "https://app.example.com,https://other.example",
                           "--parallel", "1", home=home)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            resp = http.post("/v1/chat/completions", json=chat_body(max_tokens=2),
                             headers={"Host": "llm.example.com:8000",
                                      "Origin": "https://app.example.com"})
            assert resp.status_code == 200
            assert resp.headers["access-control-allow-origin"] == "https://app.example.com"
            pre = http.options("/v1/chat/completions", headers={
                "Origin": "https://other.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization"})
            assert pre.status_code == 200
            assert http.get("/health", headers={"Host": "rebind.evil"}).status_code == 403
            assert http.get("/health", headers={"Origin": "https://evil.example"}).status_code == 403
    finally:
        server.stop()
