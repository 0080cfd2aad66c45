"""Hostile and careless input: each is a 4xx within seconds, naming the limit and the value, while
`/health` keeps answering and a concurrent stream keeps flowing; a client that leaves while its
request is prepared (or waits for its model) frees the server at once."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import httpx
import pytest

from tests.helpers import ServerProcess, smollm2_path, wait_until
from tests.integration.conftest import EOS_BAN, HUB_STYLE_ID, MODEL_ID, chat_body

pytestmark = pytest.mark.integration

WORD = {"role": "user", "content": "word"}


def chat(**extra) -> dict:
    return chat_body(**extra)


def deep_body(depth: int) -> bytes:
    return (b'{"model": "' + MODEL_ID.encode() + b'", "messages": [{"role": "user", "content": "x"}],'
            b' "chat_template_kwargs": {"x": ' + b"[" * depth + b"]" * depth + b"}}")


# (name, path, body, status, words the message must contain)
HOSTILE = [
    ("100,000 one-word messages", "/v1/chat/completions",
     chat(messages=[WORD] * 100_000), 400, ["max_messages", "100000", "4096"]),
    ("5,000 nested arrays", "/v1/chat/completions", deep_body(5000), 400, ["max_depth", "64"]),
    ("1,000 stop sequences", "/v1/chat/completions", chat(stop=["x"] * 1000), 400, ["16", "1000"]),
    ("a schema of 50,000 properties", "/v1/chat/completions",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
         "type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(50_000)}}}}),
     400, ["max_schema_nodes", "10000"]),
    ("an enum of 100,000 values", "/v1/chat/completions",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
         "enum": list(range(100_000))}}}), 400, ["max_enum", "100000"]),
    ("1,000 tools", "/v1/chat/completions",
     chat(tools=[{"type": "function", "function": {"name": f"f{i}"}} for i in range(1000)]),
     400, ["max_tools", "1000"]),
    ("a 3-million-character message", "/v1/chat/completions",
     chat(messages=[{"role": "user", "content": "x" * 3_000_000}]), 400,
     ["context length", "3000000 characters"]),
    ("4,000 messages: rendered and counted, far past the context", "/v1/chat/completions",
     chat(messages=[WORD] * 4000), 400, ["context length", "at least"]),
    ("1,000 prompts", "/v1/completions", {"model": MODEL_ID, "prompt": ["x"] * 1000}, 400,
     ["max_prompts", "1000"]),
    ("a 3-million-character prompt", "/v1/completions",
     {"model": MODEL_ID, "prompt": "hello world " * 250_000}, 400, ["context length"]),
]


class Probe(threading.Thread):
    """Asks /health every 50 ms and keeps the slowest answer."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.done, self.latencies, self.failures = url, threading.Event(), [], []

    def run(self):
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while not self.done.is_set():
                start = time.perf_counter()
                try:
                    ok = c.get("/health").status_code == 200
                except httpx.HTTPError as exc:
                    ok = False
                    self.failures.append(repr(exc))
                self.latencies.append(time.perf_counter() - start)
                if not ok:
                    self.failures.append("not 200")
                time.sleep(0.05)


class Stream(threading.Thread):
    """A long stream (end of turn banned), recording when each chunk arrives until told to stop."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.done, self.started = url, threading.Event(), threading.Event()
        self.times: list[float] = []

    def run(self):
        body = chat_body(content="Write a very long story.", max_tokens=4000, logit_bias=EOS_BAN,
                         stream=True)
        with httpx.Client(base_url=self.url, timeout=60) as c:
            with c.stream("POST", "/v1/chat/completions", json=body) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: {"):
                        self.times.append(time.perf_counter())
                        self.started.set()
                    if self.done.is_set():
                        return

    def gaps_between(self, start: float, end: float) -> list[float]:
        times = [t for t in self.times if start <= t <= end]
        return [b - a for a, b in zip(times, times[1:])]


def encode(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def post(url: str, path: str, body) -> httpx.Response:
    content = encode(body)
    return httpx.post(url + path, content=content, timeout=60,
                      headers={"content-type": "application/json"})


def test_hostile_inputs_are_refused_fast_while_health_and_a_stream_keep_going(server):
    # Encoded first: on a 2-core machine the client's own JSON work would slow the stream too.
    hostile = [(name, path, encode(body), status, words)
               for name, path, body, status, words in HOSTILE]
    stream = Stream(server.url)
    stream.start()
    assert stream.started.wait(30), "the concurrent stream never started"
    probe = Probe(server.url)
    probe.start()
    window_start = time.perf_counter()
    try:
        for name, path, body, status, words in hostile:
            start = time.perf_counter()
            resp = post(server.url, path, body)
            took = time.perf_counter() - start
            assert resp.status_code == status, (name, resp.status_code, resp.text[:300])
            error = resp.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, name
            assert error["type"] == "invalid_request_error", name
            for word in words:
                assert word in error["message"], (name, error["message"])
            assert took < 15, f"{name}: refused after {took:.1f}s"
        window_end = time.perf_counter()
    finally:
        probe.done.set()
        stream.done.set()
        probe.join(15)
        stream.join(30)
    assert not probe.failures, probe.failures[:3]
    # The bound is loose on purpose (2 cores, other work beside): what it catches is the event
    # loop held for many seconds by one request (a grammar compiled on it, a quadratic parse).
    assert max(probe.latencies) < 2.0, f"/health took {max(probe.latencies):.2f}s"
    gaps = stream.gaps_between(window_start, window_end)
    assert gaps and max(gaps) < 2.0, f"the stream stalled for {max(gaps):.2f}s"
    assert httpx.get(server.url + "/health").json()["models"][0]["active_requests"] == 0 or \
        wait_until(lambda: httpx.get(server.url + "/health").json()["models"][0][
            "active_requests"] == 0)


def raw_request(url: str, path: str, body: bytes) -> socket.socket:
    """Send a whole request on a raw socket (to close it at a moment of the test's choosing)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body)
    return sock


def gone_count(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    m = re.search(r'^localgw_requests_total\{route="/v1/chat/completions",status="499"\} ([0-9.]+)$',
                  text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def roomy_server(home):
    """Limits raised so that a huge request gets deep into preparation; two ids of one file."""
    proc = ServerProcess("--model", str(smollm2_path()), "--limit", "max_messages=200000",
                         home=home)
    yield proc
    proc.stop()


def test_a_client_that_leaves_during_preparation_frees_the_server_at_once(roomy_server):
    url = roomy_server.url
    body = json.dumps(chat(messages=[WORD] * 150_000)).encode()  # seconds of preparation
    before = gone_count(url)
    sock = raw_request(url, "/v1/chat/completions", body)
    time.sleep(0.5)  # parsed and being validated or rendered by now
    sock.close()
    left = time.perf_counter()
    assert wait_until(lambda: gone_count(url) > before, timeout=2), "the request did not end"
    assert time.perf_counter() - left < 1.5
    health = httpx.get(url + "/health").json()
    assert health["models"][0]["active_requests"] == 0
    start = time.perf_counter()
    resp = post(url, "/v1/chat/completions", chat(max_tokens=2))
    assert resp.status_code == 200
    assert time.perf_counter() - start < 10


def test_a_client_that_leaves_while_its_model_loads_is_let_go_at_once(roomy_server):
    url = roomy_server.url
    stream = Stream(url)  # keeps the one loaded model busy: the other id must wait to load
    stream.start()
    try:
        assert stream.started.wait(30)
        before = gone_count(url)
        sock = raw_request(url, "/v1/chat/completions",
                           json.dumps(dict(chat(), model=HUB_STYLE_ID)).encode())
        time.sleep(0.5)
        sock.close()
        left = time.perf_counter()
        assert wait_until(lambda: gone_count(url) > before, timeout=2), "the waiter did not end"
        assert time.perf_counter() - left < 1.5
        assert stream.is_alive()  # the busy model was not disturbed
    finally:
        stream.done.set()
        stream.join(30)
    # The stream's client has left: its model is idle, so the load the waiter started goes ahead
    # (it once waited for a wake-up that never came, into the 120 s load timeout).
    start = time.perf_counter()
    resp = post(url, "/v1/chat/completions", dict(chat(max_tokens=2), model=HUB_STYLE_ID))
    assert resp.status_code == 200, resp.text[:300]
    assert time.perf_counter() - start < 30
    assert wait_until(lambda: all(m["active_requests"] == 0
                                  for m in httpx.get(url + "/health").json()["models"]), timeout=30)


@pytest.mark.parametrize("path,body", [
    # Found by the fuzz test: decoding an empty prompt aborted llama.cpp and killed the server.
    ("/v1/completions", {"model": MODEL_ID, "prompt": "", "max_tokens": 2}),
    ("/v1/completions", {"model": MODEL_ID, "prompt": ["", "x"], "max_tokens": 2}),
])
def test_an_empty_prompt_is_answered_and_the_server_lives(server, path, body):
    resp = post(server.url, path, body)
    assert resp.status_code in (200, 400), resp.text[:300]
    if resp.status_code == 400:
        assert "empty" in resp.json()["error"]["message"]
    assert httpx.get(server.url + "/health").status_code == 200
