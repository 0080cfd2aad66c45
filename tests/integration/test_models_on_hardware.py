"""Load on demand, keep-alive, LRU eviction and memory reporting, with the real model under
several ids (imported copies of the same file)."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import ServerProcess, smollm2_path, wait_until
from tests.integration.conftest import EOS_BAN

IDS = ["a/one", "b/two", "c/three"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("home")
    env = dict(os.environ, LOCALGW_HOME=str(path))
    for model_id in IDS:
        subprocess.run([sys.executable, "-m", "localgw", "import", str(smollm2_path()), "--id",
                        model_id], check=True, env=env, capture_output=True)
    return path


def ask(url, model, **extra):
    resp = httpx.post(url + "/v1/chat/completions", timeout=120, json={
        "model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def loaded(url):
    return {m["id"]: m for m in httpx.get(url + "/health").json()["models"]}


def ps(url, home):
    out = subprocess.run([sys.executable, "-m", "localgw", "ps", "--url", url + "/v1", "--json"],
                         capture_output=True, text=True, env=dict(os.environ, LOCALGW_HOME=str(home)))
    assert out.returncode == 0, out.stderr
    return {m["id"]: m for m in json.loads(out.stdout)}


def test_load_on_demand_evict_and_keep_alive(home):
    server = ServerProcess("--max-loaded", "1", "--keep-alive", "3s", "--ctx", "2048", home=home)
    try:
        assert loaded(server.url) == {}  # nothing preloaded: models load when asked for
        ask(server.url, "a/one")
        state = loaded(server.url)
        assert list(state) == ["a/one"]
        assert 0 < state["a/one"]["expires_in_seconds"] <= 3
        assert state["a/one"]["context_length"] == 2048 and state["a/one"]["gpu_layers"] == 0
        assert list(ps(server.url, home)) == ["a/one"]

        ask(server.url, "b/two")  # max-loaded 1: the idle a/one makes room
        assert list(loaded(server.url)) == ["b/two"]

        assert wait_until(lambda: loaded(server.url) == {}, timeout=8)  # keep-alive ran out
        assert ps(server.url, home) == {}

        ask(server.url, "a/one", keep_alive=0)  # per request: unload right after
        assert loaded(server.url) == {}
        ask(server.url, "a/one", keep_alive="-1")  # per request: never
        time.sleep(3.5)
        state = loaded(server.url)
        assert state["a/one"]["keep_alive"] is None and state["a/one"]["expires_at"] is None
        assert "unloading b/two: idle for its keep-alive" in server.output
    finally:
        server.stop()


def test_a_model_serving_a_stream_is_not_evicted(home):
    server = ServerProcess("--max-loaded", "1", "--keep-alive", "1m", "--ctx", "2048", home=home)
    try:
        ask(server.url, "a/one")
        body = {"model": "a/one", "messages": [{"role": "user", "content": "Tell a long story."}],
                "max_tokens": 120, "logit_bias": EOS_BAN, "stream": True}
        frames = []
        with httpx.Client(timeout=120) as client, \
                concurrent.futures.ThreadPoolExecutor(1) as pool:
            with client.stream("POST", server.url + "/v1/chat/completions", json=body) as resp:
                lines = resp.iter_lines()
                frames.append(next(l for l in lines if l.startswith("data: {")))
                other = pool.submit(ask, server.url, "b/two")  # needs a/one's slot
                time.sleep(0.5)
                state = loaded(server.url)
                assert list(state) == ["a/one"] and state["a/one"]["busy"]
                assert ps(server.url, home)["a/one"]["active_requests"] == 1
                frames += [l for l in lines if l.startswith("data: ")]
            assert frames[-1] == "data: [DONE]"
            assert json.loads(frames[-2][6:])["choices"][0]["finish_reason"] == "length"
            assert other.result(timeout=60)["choices"][0]["message"]["content"] is not None
        assert list(loaded(server.url)) == ["b/two"]
    finally:
        server.stop()


def test_lru_eviction_with_two_slots_and_memory_estimate(home):
    server = ServerProcess("--max-loaded", "2", "--ctx", "2048", home=home)
    try:
        ask(server.url, "a/one")
        ask(server.url, "b/two")
        ask(server.url, "a/one")           # b/two is now the least recently used
        ask(server.url, "c/three")
        assert set(loaded(server.url)) == {"a/one", "c/three"}
        for model in loaded(server.url).values():
            actual, estimated = model["memory_bytes"], model["estimated_bytes"]
            assert actual > 200 * 2 ** 20           # weights + KV + compute, as llama.cpp reports
            assert abs(estimated - actual) / actual < 0.20, (estimated, actual)
    finally:
        server.stop()


@pytest.mark.parametrize("ctx", [2048, 8192])
def test_estimator_matches_llama_cpp_allocations(ctx):
    """The estimate against what llama.cpp itself allocates for this model on the CPU."""
    from localgw.engine.fit import ModelShape, estimate
    from localgw.engine.runner import LlamaRunner
    from localgw.engine.types import LoadOptions
    from localgw.gguf import read_gguf

    runner = LlamaRunner("smol", str(smollm2_path()), LoadOptions(n_ctx=ctx, n_gpu_layers=0,
                                                                  n_parallel=2))
    try:
        actual = runner.memory_bytes
        est = estimate(ModelShape.from_gguf(read_gguf(smollm2_path())), ctx, 0, n_parallel=2)
        assert abs(est.total - actual) / actual < 0.20, (est, runner.buffers)
        assert abs(est.kv - runner.buffers["kv:CPU"]) / runner.buffers["kv:CPU"] < 0.05
        assert abs(est.weights - runner.buffers["weights:CPU"]) / runner.buffers["weights:CPU"] < 0.05
    finally:
        runner.close()


def test_doctor_and_show_estimate(home):
    env = dict(os.environ, LOCALGW_HOME=str(home))
    facts = json.loads(subprocess.run([sys.executable, "-m", "localgw", "doctor", "--json"],
                                      capture_output=True, text=True, env=env).stdout)
    assert "CPU" in facts["backends"] and facts["devices"][0]["kind"] == "cpu"
    assert facts["threads"]["decode"] >= 1 and facts["home"]["path"] == str(home)
    est = json.loads(subprocess.run([sys.executable, "-m", "localgw", "show", "a/one", "--estimate",
                                     "--ctx", "4096", "--json"], capture_output=True, text=True,
                                    env=env).stdout)
    assert est["context_length"] == 4096 and est["gpu_layers"] == 0 and est["parallel"] == 4
    assert est["kv_cache_bytes"] == 4 * 4096 * 30 * 3 * 128 * 2  # one KV stream per slot


def test_a_model_that_fails_to_load_is_a_500_and_the_server_keeps_serving(home, tmp_path):
    from tests.integration.test_pull import tiny_gguf

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_gguf())  # a valid header, but no weights: llama.cpp refuses it
    env = dict(os.environ, LOCALGW_HOME=str(home))
    subprocess.run([sys.executable, "-m", "localgw", "import", str(broken), "--id", "x/broken"],
                   check=True, env=env, capture_output=True)
    server = ServerProcess("--max-loaded", "1", "--ctx", "2048", home=home)
    try:
        resp = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
            "model": "x/broken", "messages": [{"role": "user", "content": "Hi"}]})
        assert resp.status_code == 500
        err = resp.json()["error"]
        assert err["type"] == "server_error" and err["code"] == "model_load_failed"
        assert "x/broken" in err["message"]
        assert ask(server.url, "a/one")["choices"][0]["message"]["content"] is not None
        assert list(loaded(server.url)) == ["a/one"]
    finally:
        server.stop()
        subprocess.run([sys.executable, "-m", "localgw", "rm", "x/broken", "--yes"], env=env,
                       capture_output=True)
