"""Today's Claude Code and Codex requests, replayed against the real server and model.

`tests/data/agents/` holds every distinct request body Claude Code 2.1.332 and Codex 0.171.0
sent during `scripts/agents.py --capture` (a prompt, the same prompt again, a file edit): their
text replaced by its length and their ids scrubbed, every field and block as the clients sent it.
Each is sent again with its output capped; it must be answered 200, to the end of its stream.
Then Claude Code's billing line: two requests whose system prompts differ only in it share the
prompt cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import MODEL_ID

AGENTS = Path(__file__).resolve().parents[1] / "data" / "agents"
FIXTURES = sorted(AGENTS.glob("*.json"))
LAST_EVENT = {"/v1/messages": "message_stop", "/v1/responses": "response.completed"}


def replayed(fixture: Path) -> tuple[str, dict]:
    shot = json.loads(fixture.read_text())
    body = dict(shot["body"], model=MODEL_ID)
    for cap in ("max_tokens", "max_output_tokens", "max_completion_tokens"):
        if cap in body:
            body[cap] = 8
    if shot["route"] == "/v1/responses":
        body["max_output_tokens"] = 8
    return shot["route"], body


def test_the_fixtures_cover_both_clients_and_each_route():
    shots = [json.loads(f.read_text()) for f in FIXTURES]
    assert {s["client"].split()[0] for s in shots} == {"claude", "codex"}
    assert {s["route"] for s in shots} >= {"/v1/messages", "/v1/responses"}
    # the shapes that broke or cost most: a system turn among the messages, the billing line
    claude = [s["body"] for s in shots if s["route"] == "/v1/messages"]
    assert any(m.get("role") == "system" for b in claude for m in b.get("messages", []))
    assert any(str(block.get("text", "")).startswith("x-anthropic-billing-header:")
               for b in claude for block in b.get("system", []) if isinstance(block, dict))


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_a_captured_request_is_answered_to_the_end(http, fixture):
    route, body = replayed(fixture)
    if not body.get("stream"):
        resp = http.post(route, json=body)
        assert resp.status_code == 200, resp.text[:300]
        assert resp.json()["usage"]
        return
    events = []
    with http.stream("POST", route, json=body) as resp:
        assert resp.status_code == 200, resp.read()[:300]
        for line in resp.iter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
    assert "error" not in events and events[-1] in (LAST_EVENT[route], "response.incomplete")


def billing(cch: str) -> dict:
    return {"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.332.a1b; "
                                    f"cc_entrypoint=sdk-cli; cch={cch};"}


def test_the_billing_line_does_not_break_the_prompt_cache(http):
    """Claude Code's first system block changes on every call; the rest of the prompt is shared."""
    policy = " ".join(f"Rule {i}: keep answers short and check the file before editing it."
                      for i in range(60))
    usages = []
    for cch in ("3f0a1", "9c27e"):
        body = {"model": MODEL_ID, "max_tokens": 4, "temperature": 0,
                "system": [billing(cch), {"type": "text", "text": "You are a coding agent."},
                           {"type": "text", "text": policy, "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": "Say hello."}]}
        resp = http.post("/v1/messages", json=body)
        assert resp.status_code == 200, resp.text[:300]
        usages.append(resp.json()["usage"])
    second = usages[1]
    prompt = second["input_tokens"] + second["cache_read_input_tokens"]
    assert prompt > 500 and second["cache_read_input_tokens"] >= 0.9 * prompt, usages


def test_count_tokens_agrees_with_the_answer_on_a_captured_claude_request(http):
    fixture = next(f for f in FIXTURES if json.loads(f.read_text())["route"] == "/v1/messages")
    _, body = replayed(fixture)
    body.update(stream=False, max_tokens=1)
    counted = http.post("/v1/messages/count_tokens", json={
        k: v for k, v in body.items() if k in ("model", "system", "messages", "tools",
                                                "tool_choice", "thinking")})
    assert counted.status_code == 200, counted.text[:300]
    usage = http.post("/v1/messages", json=body).json()["usage"]
    assert counted.json()["input_tokens"] == usage["input_tokens"] + usage["cache_read_input_tokens"]
