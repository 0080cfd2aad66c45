"""KV-prefix reuse across the turns of one conversation."""

import json
import secrets
import time

from tests.integration.conftest import MODEL_ID


def stream_turn(http, messages):
    body = {"model": MODEL_ID, "messages": messages, "temperature": 0, "max_tokens": 12,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    ttft, text, usage = None, "", None
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        for line in resp.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk["choices"]:
                if c["delta"].get("content") and ttft is None:
                    ttft = time.perf_counter() - start
                text += c["delta"].get("content") or ""
    return ttft, text, usage


def test_six_turn_conversation_reuses_the_prefix(http):
    # a fresh ~1,500-token system prompt, so nothing of it is cached yet
    facts = " ".join(f"Fact {i}: the code word {secrets.token_hex(3)} means item {i}." for i in range(95))
    messages = [{"role": "system", "content": "You are a careful assistant. " + facts}]
    ttfts, cached, prompts = [], [], []
    for turn in range(6):
        messages.append({"role": "user", "content": f"Question {turn}: what is fact {turn}?"})
        ttft, text, usage = stream_turn(http, messages)
        messages.append({"role": "assistant", "content": text})
        ttfts.append(ttft)
        cached.append(usage["prompt_tokens_details"]["cached_tokens"])
        prompts.append(usage["prompt_tokens"])
    assert 1300 < prompts[0] < 2200
    assert cached[0] < 50
    assert all(b > a for a, b in zip(cached, cached[1:])), cached
    assert all(c >= p - 40 for c, p in zip(cached[1:], prompts[:-1])), (cached, prompts)
    assert ttfts[5] <= ttfts[0] / 2, ttfts
