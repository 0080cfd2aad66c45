"""A client that leaves frees the model at once; concurrent clients get their own answers."""

import concurrent.futures
import json
import re
import time

import httpx

from tests.helpers import wait_until
from tests.integration.conftest import EOS_BAN, chat_body

LONG_STREAM = chat_body(content="Write a very long essay about the history of the world.",
                        max_tokens=4000, logit_bias=EOS_BAN, stream=True)


def metric(http, name: str) -> float:
    text = http.get("/metrics").text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def next_request_latency(http) -> float:
    """Seconds until the next request starts answering (its first streamed token)."""
    start = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json=chat_body(max_tokens=2, stream=True)) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        next(line for line in lines if line.startswith("data: {"))
        started = time.perf_counter() - start
        for _ in lines:  # read to the end, so the model is free for whatever comes next
            pass
    return started


def test_stream_disconnect_frees_the_model(server, http):
    with httpx.Client(base_url=server.url, timeout=60) as own:
        with own.stream("POST", "/v1/chat/completions", json=LONG_STREAM) as resp:
            lines = resp.iter_lines()
            got = 0
            for line in lines:
                if line.startswith("data: {"):
                    got += 1
                if got == 3:
                    break
    # the connection is closed: the next request must start within a second
    assert next_request_latency(http) < 1.0
    assert wait_until(lambda: http.get("/health").json()["models"][0]["active_requests"] == 0)
    tokens_before = metric(http, "localgw_completion_tokens_total")
    time.sleep(0.5)
    assert metric(http, "localgw_completion_tokens_total") == tokens_before  # nothing still decoding
    assert http.get("/health").json()["models"][0]["busy"] is False


def test_non_streaming_disconnect_frees_the_model(server, http):
    body = dict(LONG_STREAM, stream=False)
    try:
        httpx.post(server.url + "/v1/chat/completions", json=body, timeout=0.5)
    except httpx.TimeoutException:
        pass
    assert next_request_latency(http) < 1.0


def test_a_request_whose_client_left_stops_reading_its_prompt(server, http):
    """Beside a running stream a new request gets a slot and reads its prompt a piece per step
    (128 tokens); when its client leaves, the reading stops at the next step."""
    before = http.get("/health").json()["models"]
    evaluated_before = sum(m.get("prompt_tokens_evaluated", 0) for m in before)
    with httpx.Client(base_url=server.url, timeout=60) as own:
        with own.stream("POST", "/v1/chat/completions", json=LONG_STREAM) as running:
            lines = running.iter_lines()  # held: a collected iterator would close the stream
            next(l for l in lines if l.startswith("data: {"))
            abandoned = chat_body(content="unique abandoned prompt " * 400, max_tokens=50)
            try:
                httpx.post(server.url + "/v1/chat/completions", json=abandoned, timeout=0.3)
            except httpx.TimeoutException:
                pass
            time.sleep(0.2)
    assert next_request_latency(http) < 1.0
    after = http.get("/health").json()["models"]
    evaluated = sum(m.get("prompt_tokens_evaluated", 0) for m in after) - evaluated_before
    # the stream's and the probe's prompts (~60 tokens) and a piece or two of the abandoned
    # ~1,600-token prompt, not all of it
    assert evaluated < 600, evaluated


def test_eight_concurrent_requests_get_their_own_answers(server, http):
    topics = ["cats", "rain", "bread", "the moon", "trains", "music", "snow", "coffee"]
    bodies = [chat_body(content=f"Write one sentence about {t}.", max_tokens=20) for t in topics]
    solo = [http.post("/v1/chat/completions", json=b).json()["choices"][0]["message"]["content"]
            for b in bodies]

    def call(body):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            return c.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(call, bodies))
    # decoded in shared batches: each starts exactly as it did alone (never another's text);
    # a long greedy output may drift later, when batched kernels round a last bit differently
    for alone, got in zip(solo, together):
        assert len(alone) >= 40 and got[:40] == alone[:40]
    assert len(set(together)) == 8


def test_concurrent_streams_are_not_cut(server):
    def stream(body):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            with c.stream("POST", "/v1/chat/completions", json=body) as resp:
                frames = [l for l in resp.iter_lines() if l.startswith("data: ")]
        return frames

    body = chat_body(content="Tell me about rivers.", max_tokens=15, stream=True)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(stream, [body] * 3))
    for frames in results:
        assert frames[-1] == "data: [DONE]"
        assert json.loads(frames[-2][6:])["choices"][0]["finish_reason"] == "length"
    texts = ["".join(json.loads(f[6:])["choices"][0]["delta"].get("content") or ""
                     for f in frames[:-1]) for frames in results]
    assert texts[0] == texts[1] == texts[2]
