"""Health, metrics, request ids and CORS."""

import re

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
    assert "access-control-allow-origin" not in bad.headers
