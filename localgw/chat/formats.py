"""What a chat template means for parsing and forcing output: one record per template, made by
the template's family (see chat.families), and the tool description for templates without tools."""

from __future__ import annotations

import json
from functools import lru_cache

from localgw.chat.families import detect, template_traits
from localgw.chat.families.base import ChatFormat

__all__ = ["ChatFormat", "chat_format", "describe_tools", "starts_in_reasoning"]


@lru_cache(maxsize=64)
def chat_format(template: str | None) -> ChatFormat:
    text = template or ""
    return detect(text).chat_format(text, template_traits(template))


def starts_in_reasoning(fmt: ChatFormat, prompt: str) -> bool:
    """Templates like DeepSeek-R1's end the prompt with `<think>`: the reply starts inside it."""
    return isinstance(fmt.reasoning, tuple) and prompt.rstrip().endswith(fmt.reasoning[0])


TOOLS_PROMPT = (
    "You can call tools. The tools, as JSON schemas:\n{tools}\n\n"
    "To call tools, reply with only this and nothing else:\n{syntax}\n"
    "where ARGUMENTS is a JSON object. Otherwise, answer normally.")


def describe_tools(messages: list[dict], tools: list[dict], syntax: str) -> list[dict]:
    """For templates that do not render tool definitions: put them in the system message."""
    described = json.dumps([{"name": t["function"]["name"],
                             "description": t["function"].get("description", ""),
                             "parameters": t["function"].get("parameters") or {}}
                            for t in tools], ensure_ascii=False)
    prompt = TOOLS_PROMPT.format(tools=described, syntax=syntax)
    out = list(messages)
    if out and out[0]["role"] == "system":
        out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out
