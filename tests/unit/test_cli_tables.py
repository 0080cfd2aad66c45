"""Tables never cut what a user must copy: ids stay whole at 80 columns and narrower, and `show`
knows the embedded default model that `serve` serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localgw.defaults import DEFAULT_MODEL_ID
from localgw.catalog import CATALOG
from tests.helpers import smollm2_path


def localgw(home, *args, columns: int):
    env = dict(os.environ, LOCALGW_HOME=str(home), COLUMNS=str(columns))
    env.pop("LOCALGW_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "localgw", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def assert_whole(ids, out):
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for model_id in ids:
        assert any(model_id in line.split() for line in lines), (model_id, out.stdout)


@pytest.mark.parametrize("columns", [120, 80, 60, 40])
def test_catalog_ids_are_whole(tmp_path, columns):
    out = localgw(tmp_path, "catalog", columns=columns)
    assert_whole([e.id for e in CATALOG], out)
    if columns == 120:
        assert "GGUF REPO" in out.stdout  # wide enough: nothing left out


@pytest.mark.parametrize("columns", [80, 60])
def test_list_ids_are_whole(tmp_path, columns):
    ids = ["HuggingFaceTB/SmolLM2-135M-Instruct-with-a-long-name", "me/smol"]
    for model_id in ids:
        subprocess.run([sys.executable, "-m", "localgw", "import", str(smollm2_path()), "--id", model_id],
                       check=True, capture_output=True, env=dict(os.environ, LOCALGW_HOME=str(tmp_path)))
    assert_whole(ids, localgw(tmp_path, "list", columns=columns))


class _Health(BaseHTTPRequestHandler):
    models = [{"id": "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M", "memory_bytes": 5_300_000_000,
               "context_length": 8192, "gpu_layers": 33, "active_requests": 0, "busy": False,
               "keep_alive": 300, "expires_in_seconds": 250},
              {"id": DEFAULT_MODEL_ID, "memory_bytes": 120_000_000, "context_length": 8192,
               "gpu_layers": 0, "active_requests": 1, "busy": True, "keep_alive": None,
               "expires_in_seconds": None}]

    def do_GET(self):  # noqa: N802
        body = json.dumps({"status": "ok", "models": self.models, "loading": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("columns", [80, 60])
def test_ps_ids_are_whole(tmp_path, columns):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = localgw(tmp_path, "ps", "--url", f"http://127.0.0.1:{server.server_port}", columns=columns)
    finally:
        server.shutdown()
    assert_whole([m["id"] for m in _Health.models], out)


def test_show_knows_the_embedded_default_model(tmp_path):
    shown = localgw(tmp_path, "show", DEFAULT_MODEL_ID, "--json", columns=80)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["id"] == DEFAULT_MODEL_ID and data["gguf"]["architecture"] == "llama"
    human = localgw(tmp_path, "show", DEFAULT_MODEL_ID, columns=80)
    assert human.returncode == 0 and DEFAULT_MODEL_ID in human.stdout
