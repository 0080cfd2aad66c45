"""Render a conversation with the model's own Jinja chat template, in a sandbox.

Mirrors what transformers' `apply_chat_template` offers a template (trim_blocks, lstrip_blocks,
loopcontrols, `raise_exception`, `strftime_now`, a `tojson` that keeps non-ASCII), so templates
written for Hugging Face render here unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localgw.errors import InvalidRequest


class TemplateError(InvalidRequest):
    """The chat template refused the conversation (its own `raise_exception`) or failed."""


class TemplateRejected(TemplateError):
    """The template's own `raise_exception`: the conversation breaks the model's rules."""


def _raise_exception(message: str):
    raise TemplateRejected(f"the model's chat template rejected the conversation: {message}")


def _tojson(value: Any, indent: int | None = None, separators=None, sort_keys: bool = False,
            ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys,
                      ensure_ascii=ensure_ascii)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=32)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per template text; rendering is then a plain function call."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"the chat template does not compile: {exc}") from exc


def render_chat(source: str, messages: list[dict], *, tools: list[dict] | None = None,
                add_generation_prompt: bool = True, bos_token: str = "", eos_token: str = "",
                extra: dict | None = None) -> str:
    """The prompt text for `messages` as this template defines it."""
    template = compile_template(source)
    variables = dict(extra or {})
    variables.update(messages=messages, add_generation_prompt=add_generation_prompt,
                     bos_token=bos_token, eos_token=eos_token)
    if tools:
        variables["tools"] = tools
    try:
        return template.render(**variables)
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the chat template failed on this conversation: {exc}") from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise TemplateError(f"the chat template failed on this conversation: {exc}") from exc


# A plain ChatML template for GGUF files that carry none.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "(message['content'] or '') + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
