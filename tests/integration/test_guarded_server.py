"""A server with an API key and a one-slot queue: 429, and graceful shutdown. The key's checks are
tested in-process over the fake engine (tests/unit/test_surface_fake.py)."""

import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import ServerProcess, smollm2_path
from tests.integration.conftest import EOS_BAN, chat_body

KEY = "sk-local-test-key"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    proc = ServerProcess("--model", str(smollm2_path()), "--api-key", KEY, "--max-queue", "1", "--parallel", "1",
                         "--ctx", "2048", home=tmp_path_factory.mktemp("home"))
    yield proc
    proc.stop()


def test_queue_full_is_429_with_retry_after(guarded):
    auth = {"Authorization": f"Bearer {KEY}"}
    long = chat_body(content="Write a long essay.", max_tokens=3000, logit_bias=EOS_BAN, stream=True)
    with httpx.Client(base_url=guarded.url, headers=auth, timeout=60) as c1, \
            httpx.Client(base_url=guarded.url, headers=auth, timeout=60) as c2:
        with c1.stream("POST", "/v1/chat/completions", json=long) as running:
            lines = running.iter_lines()  # held: a collected iterator would close the stream
            next(l for l in lines if l.startswith("data: {"))
            with c2.stream("POST", "/v1/chat/completions", json=long) as queued:
                time.sleep(0.3)  # it is now waiting in the one queue slot
                third = httpx.post(guarded.url + "/v1/chat/completions", json=chat_body(),
                                   headers=auth)
                assert third.status_code == 429
                assert third.json()["error"]["code"] == "queue_full"
                assert third.json()["error"]["type"] == "rate_limit_error"
                assert int(third.headers["retry-after"]) >= 1
                del queued
    time.sleep(0.2)
    ok = httpx.post(guarded.url + "/v1/chat/completions", json=chat_body(max_tokens=2), headers=auth)
    assert ok.status_code == 200


def test_sigterm_mid_stream_shuts_down_cleanly(tmp_path):
    proc = ServerProcess("--model", str(smollm2_path()), home=tmp_path)
    body = chat_body(content="Write a long essay.", max_tokens=3000, logit_bias=EOS_BAN, stream=True)
    frames = []
    with httpx.Client(base_url=proc.url, timeout=60) as c:
        with c.stream("POST", "/v1/chat/completions", json=body) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    frames.append(line)
                if len(frames) == 3:
                    proc.proc.send_signal(signal.SIGTERM)
    # the stream was ended properly, telling the client why, not cut mid-chunk
    assert frames[-1] == "data: [DONE]"
    assert "shutting down" in frames[-2]
    start = time.monotonic()
    code = proc.proc.wait(20)
    assert time.monotonic() - start < 15
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert "Traceback" not in proc.output
    assert "unloaded" in proc.output


def test_non_loopback_bind_without_key_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "localgw", "serve", "--host", "0.0.0.0",
                          "--model", str(smollm2_path())], capture_output=True, text=True,
                         timeout=60, env={"LOCALGW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("localgw: error: refusing to listen on 0.0.0.0")
    assert "Traceback" not in out.stderr
