"""A server inside the chat app's process, for `localgw chat` when none answers at the URL."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from localgw import config
from localgw.errors import ServiceUnavailable
from localgw.server.settings import ServerSettings


def server_answers(url: str, api_key: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=1.5, headers=headers).status_code < 500
    except httpx.HTTPError:
        return False


class InProcessServer:
    """uvicorn in a background thread on a free loopback port; logs go to a file, not the TUI."""

    def __init__(self, model: str | None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.home() / "logs" / "chat-server.log"
        self.settings = ServerSettings(port=self.port, models=[model] if model else [])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 120) -> "InProcessServer":
        from localgw.cli.serve import uvicorn_config
        from localgw.server.app import create_app

        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        app = create_app(self.settings)
        cfg = uvicorn_config(app, "127.0.0.1", self.port, log_config=None)  # logs: the handler above
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._server.run, name="localgw-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServiceUnavailable(f"the in-process server did not start; see {self.log_path}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
