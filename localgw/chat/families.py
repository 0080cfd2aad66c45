"""Recognise a chat template's family and what it supports, from the template text alone."""

from __future__ import annotations

from dataclasses import dataclass

# (marker in the template, family name); first match wins, most specific first.
_TOOL_FORMATS = [
    ("<|channel|>", "gpt-oss"),
    ("<｜tool▁calls▁begin｜>", "deepseek"),
    ("<function=", "qwen3-coder"),
    ("[TOOL_CALLS]", "mistral"),
    ("<tool_call>", "hermes"),
    ("<|python_tag|>", "llama3"),
    ("<|start_header_id|>", "llama3"),
]
_REASONING_MARKERS = ["<think>", "</think>", "[THINK]", "<|channel|>", "reasoning_content"]


@dataclass(frozen=True)
class TemplateTraits:
    family: str
    supports_tools: bool
    supports_reasoning: bool


def template_traits(template: str | None) -> TemplateTraits:
    """Family, tool and reasoning support of a Jinja chat template."""
    if not template:
        return TemplateTraits("none", False, False)
    family = next((name for marker, name in _TOOL_FORMATS if marker in template), None)
    if family is None:
        family = "chatml" if "<|im_start|>" in template else "generic"
    supports_tools = "tools" in template and ("tool_call" in template or "tool" in family
                                              or family in ("mistral", "llama3", "deepseek",
                                                            "qwen3-coder", "gpt-oss"))
    supports_reasoning = any(m in template for m in _REASONING_MARKERS)
    return TemplateTraits(family, supports_tools, supports_reasoning)
