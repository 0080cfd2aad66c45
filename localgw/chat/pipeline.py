"""A chat request → everything the engine and the output parser need. Pure, given a converter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from localgw.chat.families import family_of
from localgw.chat.formats import ChatFormat, chat_format, describe_tools, starts_in_reasoning
from localgw.chat.grammars import (Converter, Forced, json_object_grammar, json_schema_grammar,
                                   tool_call_grammar)
from localgw.chat.output import MessageParser
from localgw.chat.prompt import template_messages
from localgw.chat.requests import ChatRequest
from localgw.chat.template import TemplateError, TemplateRejected, compile_template, render_chat

ConverterFactory = Callable[[], Converter]


@dataclass
class PreparedChat:
    prompt: str            # rendered prompt, prefill included
    grammar: str | None
    preserve: tuple[str, ...]
    new_output: Callable[..., MessageParser]  # (choice index=0) → that choice's parser
    fmt: ChatFormat


@lru_cache(maxsize=128)
def _grammar(kind: str, payload: str, fmt: ChatFormat, parallel: bool,
             factory: ConverterFactory) -> Forced:
    """Compiled once per schema (or tool set): building a grammar is not free."""
    conv = factory()
    data = json.loads(payload)
    if kind == "json_object":
        return Forced(json_object_grammar(conv))
    if kind == "json_schema":
        return Forced(json_schema_grammar(conv, data))
    return tool_call_grammar(conv, fmt, data, parallel)


def forced_output(req: ChatRequest, fmt: ChatFormat, factory: ConverterFactory) -> Forced | None:
    """The grammar (and prefill) a request asks for: forced tool calls, or a JSON format."""
    choice = req.tool_choice
    if req.tools and choice not in (None, "none", "auto"):
        tools = [t.model_dump(exclude_none=True) for t in req.tools]
        if not isinstance(choice, str):
            tools = [t for t in tools if t["function"]["name"] == choice.function.name]
        return _grammar("tools", json.dumps(tools), fmt,
                        req.parallel_tool_calls and isinstance(choice, str), factory)
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return _grammar("json_object", "null", fmt, False, factory)
    return _grammar("json_schema", json.dumps(rf.json_schema.schema_), fmt,
                    False, factory)


def render_conversation(req: ChatRequest, template: str, fmt: ChatFormat, tools: list[dict] | None,
                        bos_token: str, eos_token: str) -> str:
    """The prompt, with tools rendered by the template or described in the system message."""
    def attempt(none_as_empty: bool, arguments_as_text: bool, fold_system: str | None) -> str:
        messages = template_messages(req.messages, none_as_empty, arguments_as_text)
        messages = family_of(fmt).history(messages)
        template_tools = tools
        if tools and not fmt.native_tools:
            messages, template_tools = describe_tools(messages, tools, fmt.call_syntax), None
        if fold_system == "lead":
            messages = lead_with_system(messages)
        elif fold_system == "user":
            messages = fold_system_into_user(messages)
        return render_chat(template, messages, tools=template_tools, bos_token=bos_token,
                           eos_token=eos_token, extra=req.chat_template_kwargs)

    # Templates disagree on small things (None content, arguments as object or text, where a
    # system turn may stand, whether one exists); try the forms transformers users pass, most
    # faithful first: system messages where they are, then joined into one leading system
    # message (templates that allow one, first), then opening the first user turn. Only forms
    # that change something for this conversation are tried: a template that fails for another
    # reason fails once (rendering a long conversation eight times was the slowest way to a 400).
    compile_template(template)  # a template that does not compile fails here, once
    has_none = any(m.text() is None for m in req.messages)
    has_calls = any(m.tool_calls for m in req.messages)
    encodings = [(none, text) for none in ((False, True) if has_none else (False,))
                 for text in ((False, True) if has_calls else (False,))]
    roles = [m.role for m in req.messages]
    systems = [i for i, role in enumerate(roles) if role in ("system", "developer")]
    folds: list[str | None] = [None]
    if len(systems) > 1 or (systems and systems[0] != 0):
        folds.append("lead")
    if systems or (tools and not fmt.native_tools):
        folds.append("user")
    # Some templates keep the first system message and skip later ones without a word (SmolLM3):
    # a form is taken only if every system text reached the prompt, so none is lost silently.
    system_texts = [t.strip() for i in systems if (t := req.messages[i].text()) and t.strip()]
    last: TemplateError | None = None
    for fold in folds:
        for none_as_empty, as_text in encodings:
            try:
                prompt = attempt(none_as_empty, as_text, fold)
                if fold is None and len(folds) > 1 and "lead" in folds and not all(
                        t in prompt for t in system_texts):
                    last = TemplateError("the template leaves out a system message")
                    break
                return prompt
            except TemplateRejected as exc:
                last = exc
                break  # the template's own rule: another encoding will not change its mind
            except TemplateError as exc:
                last = exc
    raise last


def lead_with_system(messages: list[dict]) -> list[dict]:
    """For templates that allow one system turn, first: every system text joined there."""
    return [{"role": "system", "content": _system_text(messages)}, *_without_system(messages)]


def fold_system_into_user(messages: list[dict]) -> list[dict]:
    """For templates without a system role: the system text opens the first user turn."""
    system, rest = _system_text(messages), _without_system(messages)
    for i, m in enumerate(rest):
        if m["role"] == "user":
            rest[i] = {**m, "content": f"{system}\n\n{m['content'] or ''}"}
            return rest
    return [{"role": "user", "content": system}, *rest]


def _system_text(messages: list[dict]) -> str:
    return "\n\n".join(m["content"] or "" for m in messages if m["role"] == "system")


def _without_system(messages: list[dict]) -> list[dict]:
    """The turns without the system ones. User turns that a system turn stood between become one:
    templates with one system turn (or none) want user and assistant turns to alternate."""
    out: list[dict] = []
    for i, m in enumerate(messages):
        if m["role"] == "system":
            continue
        if (m["role"] == "user" and out and out[-1]["role"] == "user" and i > 0
                and messages[i - 1]["role"] == "system"
                and isinstance(m["content"], str) and isinstance(out[-1]["content"], str)):
            out[-1] = {**out[-1], "content": f"{out[-1]['content']}\n\n{m['content']}"}
        else:
            out.append(m)
    return out


def prepare_chat(req: ChatRequest, template: str, *, factory: ConverterFactory,
                 bos_token: str = "", eos_token: str = "") -> PreparedChat:
    fmt = chat_format(template)
    tools_on = bool(req.tools) and req.tool_choice != "none"
    tools = [t.model_dump(exclude_none=True) for t in req.tools] if tools_on else None
    prompt = render_conversation(req, template, fmt, tools, bos_token, eos_token)
    forced = forced_output(req, fmt, factory)
    prefill = forced.prefill if forced else ""
    # Under a grammar the reply is the structure itself: no thinking to split out.
    inside = starts_in_reasoning(fmt, prompt) and forced is None

    def new_output(index: int = 0) -> MessageParser:
        return MessageParser(fmt, tools=tools, inside_reasoning=inside, prefill=prefill,
                             parse_reasoning=forced is None, index=index)

    return PreparedChat(prompt + prefill, forced.grammar if forced else None, fmt.preserved,
                        new_output, fmt)
