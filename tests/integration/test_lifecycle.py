"""Model lifecycle under load: a model asked for is never evicted under its request, and a fault
in a model's decode loop fails its requests with a 500, then the model is loaded afresh."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from localgw.engine import loop as loop_module
from localgw.server.settings import ServerSettings
from tests.helpers import ServerProcess, ThreadServer, smollm2_path, wait_until
from tests.integration.conftest import EOS_BAN

pytestmark = pytest.mark.integration

A, B = "lifecycle/model-a", "lifecycle/model-b"


def _chat(model, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": 24, "logit_bias": EOS_BAN}
    return body | extra


def _stream_events(resp) -> list[dict | str]:
    out = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            out.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
    return out


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    for model_id in (A, B):
        subprocess.run([sys.executable, "-m", "localgw", "import", str(smollm2_path()), "--id",
                        model_id], check=True, capture_output=True,
                       env={"LOCALGW_HOME": str(home), "PATH": "/usr/bin:/bin"})
    server = ServerProcess("--max-loaded", "1", "--keep-alive", "3s", "--parallel", "1",
                           "--ctx", "2048", home=home)
    yield server
    server.stop()


def test_a_model_loaded_for_a_waiting_stream_is_not_evicted_by_the_next_request(two_models):
    """A stream that has to load its model, then a request for another model moments later:
    the stream runs to its end, and the other request waits for room, then runs."""
    with httpx.Client(base_url=two_models.url, timeout=120) as http:
        for first, second in ((A, B), (B, A), (A, B)):
            wait_until(lambda: not any(m["id"] == first for m in http.get("/health").json()["models"]),
                       30)
            other: dict = {}

            def ask_second():
                time.sleep(0.05)
                other["resp"] = http.post("/v1/chat/completions", json=_chat(second, max_tokens=4))

            helper = threading.Thread(target=ask_second)
            with http.stream("POST", "/v1/chat/completions", json=_chat(first, stream=True)) as resp:
                helper.start()
                assert resp.status_code == 200
                events = _stream_events(resp)
            helper.join(120)
            assert events[-1] == "[DONE]"
            assert not any("error" in e for e in events if isinstance(e, dict)), events[-3:]
            assert events[-2]["choices"][0]["finish_reason"] == "length"
            assert other["resp"].status_code == 200, other["resp"].text
        assert http.get("/health").json()["status"] == "ok"


@pytest.fixture
def faulty_loop(monkeypatch):
    """The decode loop of any model raises once each time the returned event is set."""
    armed = threading.Event()
    real_step = loop_module.Loop.step

    def step(self, events):
        if armed.is_set():
            armed.clear()
            raise RuntimeError("injected fault")
        return real_step(self, events)

    monkeypatch.setattr(loop_module.Loop, "step", step)
    return armed


def test_a_fault_in_the_decode_loop_fails_its_requests_and_the_model_is_reloaded(faulty_loop,
                                                                                  tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("LOCALGW_HOME", str(tmp_path))
    settings = ServerSettings(models=[str(smollm2_path())])
    with ThreadServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        manager = server.app.state.manager
        model_id = manager.preload[0]
        first_runner = manager.loaded[model_id].runner
        # a stream in flight when the loop fails: an error frame, then [DONE]
        with http.stream("POST", "/v1/chat/completions",
                         json=_chat(model_id, stream=True, max_tokens=400)) as resp:
            lines = resp.iter_lines()
            while not next(lines).startswith("data: {"):
                pass  # the stream has started
            faulty_loop.set()
            rest = [line for line in lines if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]"
        assert "error" in rest[-2], rest[-4:]
        error = json.loads(rest[-2][6:])["error"]
        assert error["code"] == "model_failed" and "injected fault" in error["message"]
        assert wait_until(lambda: model_id not in manager.loaded or
                          manager.loaded[model_id].runner is not first_runner, 5)
        # retired and freed, not left wedged (closed on a worker thread once it left `loaded`)
        assert wait_until(lambda: first_runner.jobs.closed, 10)
        # the next request loads the model afresh and is answered
        ok = http.post("/v1/chat/completions", json=_chat(model_id, max_tokens=4))
        assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] == "length"
        second_runner = manager.loaded[model_id].runner
        assert second_runner is not first_runner and second_runner.broken is None
        # a request that is not streamed gets the 500 itself
        faulty_loop.set()
        failed = http.post("/v1/chat/completions", json=_chat(model_id, max_tokens=4))
        assert failed.status_code == 500 and failed.json()["error"]["code"] == "model_failed"
        again = http.post("/v1/chat/completions", json=_chat(model_id, max_tokens=4))
        assert again.status_code == 200
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["models"][0]["active_requests"] == 0


def test_the_grammars_a_model_remembers_are_bounded():
    from localgw.engine.model import GOOD_GRAMMARS
    from localgw.engine.runner import LlamaRunner
    from localgw.engine.types import LoadOptions
    from localgw.errors import InvalidRequest

    runner = LlamaRunner("smol", str(smollm2_path()), LoadOptions(n_ctx=256, n_parallel=1))
    try:
        for i in range(GOOD_GRAMMARS + 40):
            runner.check_grammar(f'root ::= "answer {i}"')
        assert len(runner.model._good_grammars) == GOOD_GRAMMARS
        with pytest.raises(InvalidRequest):
            runner.check_grammar("root ::= (")
        assert len(runner.model._good_grammars) == GOOD_GRAMMARS
    finally:
        runner.close()


def test_a_fault_in_one_request_ends_that_request_alone(monkeypatch, tmp_path):
    """A bug that hits one request's sampling fails that request with a 500; the stream beside
    it runs on, and the model stays loaded."""
    from localgw.engine import sampling

    real_init, real_sample = sampling.Sampler.__init__, sampling.Sampler.sample

    def init(self, params, seed, *args):
        real_init(self, params, seed, *args)
        self.victim = params.seed == 666

    def sample(self, *args):
        if self.victim:
            raise RuntimeError("injected fault in one request")
        return real_sample(self, *args)

    monkeypatch.setattr(sampling.Sampler, "__init__", init)
    monkeypatch.setattr(sampling.Sampler, "sample", sample)
    monkeypatch.setenv("LOCALGW_HOME", str(tmp_path))
    settings = ServerSettings(models=[str(smollm2_path())])
    with ThreadServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        manager = server.app.state.manager
        model_id = manager.preload[0]
        runner = manager.loaded[model_id].runner
        results = {}

        def run(name, **extra):
            with http.stream("POST", "/v1/chat/completions",
                             json=_chat(model_id, stream=True, **extra)) as resp:
                results[name] = (resp.status_code, [line for line in resp.iter_lines()
                                                    if line.startswith("data: ")] or [resp.read()])

        bystander = threading.Thread(target=run, args=("bystander",),
                                     kwargs={"seed": 1, "max_tokens": 60})
        bystander.start()
        time.sleep(0.3)
        run("victim", seed=666, max_tokens=300)
        bystander.join(60)
        status, lines = results["victim"]
        if status == 200:  # the error came after the stream's head: an error frame, [DONE]
            assert lines[-1] == "data: [DONE]" and "injected fault" in lines[-2]
        else:
            assert status == 500 and b"injected fault" in lines[0]
        status, lines = results["bystander"]
        assert status == 200 and lines[-1] == "data: [DONE]"
        assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "length"
        assert manager.loaded[model_id].runner is runner and runner.broken is None
        again = http.post("/v1/chat/completions", json=_chat(model_id, max_tokens=4))
        assert again.status_code == 200


def test_a_crash_in_the_server_prints_every_threads_python_stack(tmp_path):
    """A fatal signal (what a fault inside llama.cpp raises) leaves the Python stacks on stderr,
    for the bug report; while a model loads, llama.cpp's own last words are not hidden either
    (engine.model loads with the process's stderr open)."""
    import signal

    proc = ServerProcess("--model", str(smollm2_path()), home=tmp_path)
    try:
        proc.proc.send_signal(signal.SIGSEGV)
        assert proc.proc.wait(20) == -signal.SIGSEGV
        assert wait_until(lambda: "Fatal Python error: Segmentation fault" in proc.output, 5)
        assert "localgw" in proc.output.split("Fatal Python error", 1)[1]  # a stack of ours
    finally:
        proc.stop()
