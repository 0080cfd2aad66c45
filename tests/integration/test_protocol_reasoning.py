"""Reasoning through the Anthropic and Responses doors: the same split as chat completions.

SmolLM2 with a QwQ-style template (ChatML) that opens `<think>` in the prompt when thinking is
enabled, so the reply starts inside the reasoning. Whatever the model says, each door must carry
the same reasoning and text as `/v1/chat/completions` does for the same request.
"""

import anthropic
import httpx
import openai
import pytest

from tests.helpers import templated_server
from tests.integration.conftest import MODEL_ID

QUESTION = "What is 2 + 3?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = templated_server("Qwen-QwQ-32B.jinja", tmp_path_factory.mktemp("home"))
    yield proc
    proc.stop()


def via_chat(server) -> dict:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        return http.post("/v1/chat/completions", json={
            "model": MODEL_ID, "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 12, "temperature": 0,
            "chat_template_kwargs": {"enable_thinking": True}}).json()["choices"][0]["message"]


def test_anthropic_thinking_blocks_match_chat_reasoning(server):
    expected = via_chat(server)
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    body = {"model": MODEL_ID, "max_tokens": 12, "extra_body": {"temperature": 0},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": QUESTION}]}
    msg = client.messages.create(**body)
    thinking = [b.thinking for b in msg.content if b.type == "thinking"]
    assert thinking == ([expected["reasoning_content"]] if expected.get("reasoning_content")
                        else [])
    assert msg.content[0].type == "thinking" or not thinking  # thinking comes first
    texts = [b.text for b in msg.content if b.type == "text"]
    assert "".join(texts) == (expected["content"] or "")
    thinking = ""
    with client.messages.stream(**body) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                thinking += event.delta.thinking
    assert thinking == (expected.get("reasoning_content") or "")
    assert "<think>" not in thinking and "</think>" not in "".join(texts)


def test_responses_reasoning_items_match_chat_reasoning(server):
    expected = via_chat(server)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    body = {"model": MODEL_ID, "input": QUESTION, "max_output_tokens": 12, "temperature": 0,
            "reasoning": {"effort": "low"}}
    resp = client.responses.create(**body)
    reasoning = [i.content[0].text for i in resp.output if i.type == "reasoning"]
    assert reasoning == ([expected["reasoning_content"]] if expected.get("reasoning_content")
                         else [])
    assert resp.output[0].type == "reasoning" or not reasoning  # reasoning comes first
    assert resp.output_text == (expected["content"] or "")
    events = list(client.responses.create(stream=True, **body))
    streamed = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert streamed == (expected.get("reasoning_content") or "")
