"""The template is re-rendered in another encoding only when that encoding changes something."""

from __future__ import annotations

import pytest

import localgw.chat.pipeline as pipeline
from localgw.chat.formats import chat_format
from localgw.chat.requests import ChatRequest
from localgw.chat.template import TemplateError

BROKEN = "{% for m in messages %}{{ m['content'] + 1 }}{% endfor %}"  # fails on any conversation
PLAIN = {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 3}


@pytest.fixture
def renders(monkeypatch):
    count = []
    real = pipeline.render_chat

    def counting(*args, **kwargs):
        count.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(pipeline, "render_chat", counting)
    return count


def render(body: dict, template: str):
    req = ChatRequest.model_validate(body)
    return pipeline.render_conversation(req, template, chat_format(template), None, "", "")


def test_a_template_failing_for_another_reason_is_rendered_once(renders):
    with pytest.raises(TemplateError):
        render(PLAIN, BROKEN)
    assert len(renders) == 1


def test_with_a_system_turn_it_is_tried_folded_too(renders):
    body = {**PLAIN, "messages": [{"role": "system", "content": "s"}, *PLAIN["messages"]]}
    with pytest.raises(TemplateError):
        render(body, BROKEN)
    assert len(renders) == 2


def test_none_content_and_tool_calls_bring_their_encodings_back(renders):
    body = {"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}
    with pytest.raises(TemplateError):
        render(body, BROKEN)
    assert len(renders) == 4


def test_a_template_that_does_not_compile_is_never_rendered(renders):
    with pytest.raises(TemplateError) as info:
        render(PLAIN, "{% for %}")
    assert "does not compile" in info.value.message and not renders
