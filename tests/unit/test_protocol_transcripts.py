"""A conversation sent through each wire format renders to the same prompt as through chat.

The transcripts are multi-turn tool-use sessions shaped as Claude Code (Anthropic Messages) and
the Codex CLI (Responses) send them: several tools, parallel calls, a tool result that is an
error. Each holds the same conversation as a chat completions request; both go through the real
translation and `prepare_chat`, so equal prompt text means equal prompt tokens.
"""

import json

import pytest

from localgw.chat.pipeline import prepare_chat
from localgw.chat.requests import ChatRequest, parse_body
from localgw.chat.schema_grammar import JsonSchemaConverter
from localgw.protocols.anthropic import MessagesRequest
from localgw.protocols.responses import ResponsesRequest

from tests.helpers import DATA

TEMPLATES = ["Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja"]


def transcript(name: str) -> dict:
    return json.loads((DATA / "transcripts" / name).read_text())


def prompt(req: ChatRequest, template: str) -> str:
    source = (DATA / "templates" / template).read_text()
    return prepare_chat(req, source, factory=JsonSchemaConverter).prompt


def chat_equivalent(data: dict) -> ChatRequest:
    return parse_body(ChatRequest, json.dumps(data["chat"]).encode())


@pytest.mark.parametrize("template", TEMPLATES)
def test_claude_code_transcript_renders_like_chat(template):
    data = transcript("claude_code.json")
    req = MessagesRequest.model_validate_json(json.dumps(data["anthropic"]))
    via_messages = prompt(req.to_chat(), template)
    assert via_messages == prompt(chat_equivalent(data), template)
    for needle in ("Exit code 1", '"name": "Grep"', "Thanks. Run the test again."):
        assert needle in via_messages


@pytest.mark.parametrize("template", TEMPLATES)
def test_codex_transcript_renders_like_chat(template):
    data = transcript("codex_cli.json")
    req = ResponsesRequest.model_validate_json(json.dumps(data["responses"]))
    via_responses = prompt(req.to_chat(req.input_items()), template)
    assert via_responses == prompt(chat_equivalent(data), template)
    for needle in ("No such file or directory", '"name": "update_plan"', "<environment_context>"):
        assert needle in via_responses
    assert "web_search" not in via_responses  # a built-in tool that cannot run here


def test_codex_transcript_through_a_stored_response_renders_the_same():
    """`previous_response_id` is "the stored items, then these": the prompt cannot tell."""
    from localgw.protocols.responses import ResponseStore
    data = transcript("codex_cli.json")
    whole = ResponsesRequest.model_validate_json(json.dumps(data["responses"]))
    items = whole.input_items()
    store = ResponseStore()
    first_items, output, rest = items[:4], items[4:5], items[5:]
    store.save({"id": "resp_1", "output": [i.model_dump(exclude_none=True) for i in output]},
               first_items, store=True)
    chained = ResponsesRequest.model_validate_json(json.dumps(
        data["responses"] | {"input": [i.model_dump() for i in rest],
                             "previous_response_id": "resp_1"}))
    history = store.history("resp_1") + chained.input_items()
    template = TEMPLATES[0]
    assert prompt(chained.to_chat(history), template) == prompt(whole.to_chat(items), template)
