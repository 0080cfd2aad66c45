"""Integration fixtures: real `localgw serve` processes with the real SmolLM2 model.

Tests run one at a time, so no two models ever decode at once on these small machines.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import openai
import pytest

from tests.helpers import ServerProcess, smollm2_path, templated_server

MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"   # a file served by path is known by its stem
HUB_STYLE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EOS_BAN = {"2": -100}  # <|im_end|>: keeps the model talking for long-stream tests


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("localgw-home")
    # A registered copy under an id with a slash, for /v1/models/{id}.
    subprocess.run([sys.executable, "-m", "localgw", "import", str(smollm2_path()), "--id",
                    HUB_STYLE_ID], check=True, env={"LOCALGW_HOME": str(path),
                                                    "PATH": "/usr/bin:/bin"}, capture_output=True)
    return path


@pytest.fixture(scope="session")
def server(home):
    proc = ServerProcess("--model", str(smollm2_path()), home=home)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def qwen_server(tmp_path_factory):
    """SmolLM2 with Qwen2.5's tool-capable template (both are ChatML), in a home of its own;
    test_structured and test_responses share it."""
    proc = templated_server("Qwen-Qwen2.5-7B-Instruct.jinja", tmp_path_factory.mktemp("home"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def chat_body(content="Say hello.", **extra):
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": content}],
            "temperature": 0, "max_tokens": 16}
    body.update(extra)
    return body
