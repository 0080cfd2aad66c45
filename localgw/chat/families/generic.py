"""The generic family, for templates that know nothing of tools: the tools are described in the
system message (formats.describe_tools), a call is a reply that is one
`{"tool_calls": [{"name": …, "arguments": …}, …]}` object, and earlier calls and results are
written into the history as plain text. Every template matches it: it comes last in the registry.
"""

from __future__ import annotations

import json
import re

from localgw.chat.families.base import CallGrammar, ChatFormat, Family, Forced, TemplateTraits
from localgw.chat.families.common import (SPACE, THINK, WS_COMMA, Call, Parsed, json_call,
                                          think_tags)
from localgw.chat.memo import ParseMemo
CALL_SYNTAX = '{"tool_calls": [{"name": TOOL_NAME, "arguments": ARGUMENTS}]}'
_GENERIC_HEAD = re.compile(r'\s*\{\s*"tool_calls"\s*:\s*\[')
_GENERIC_START = '{"tool_calls": ['
_NON_SPACES = re.compile(r"(?: *[^ ]){1,%d}" % len(_GENERIC_START))  # up to 16 non-" " characters


def parse_generic(text: str, final: bool, tools: dict, memo: ParseMemo | None = None) -> Parsed:
    """A reply that is one `{"tool_calls": […]}` object, or only content."""
    memo = ParseMemo() if memo is None else memo
    resumed = memo.resume("generic")
    if resumed is None:
        m = _GENERIC_HEAD.match(text)
        if not m:
            first = memo.skip(SPACE, text, 0)
            if not final and first < len(text) and _GENERIC_START.startswith(
                    _NON_SPACES.match(text, first).group().replace(" ", "")):
                return Parsed("", [])
            return Parsed(text, [])
        calls: list[Call] = []
        pos = m.end()
    else:
        pos, calls, _ = resumed
    while True:
        pos = memo.skip(WS_COMMA, text, pos)
        if pos >= len(text) or text[pos] == "]":
            return Parsed("", calls)
        call, end, pending = json_call(text, pos, final, memo)
        if call is not None:
            calls.append(call)
        if pending or end < 0:
            return Parsed("", calls)
        pos = end
        memo.mark("generic", pos, calls)


def generic_history(messages: list[dict]) -> list[dict]:
    """Earlier calls and results as plain text, for templates that know nothing of tools."""
    out: list[dict] = []
    for msg in messages:
        msg = dict(msg)
        if msg.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                     for c in msg.pop("tool_calls")]
            msg["content"] = ((msg.get("content") or "") + json.dumps(
                {"tool_calls": calls}, ensure_ascii=False)).strip()
        if msg["role"] == "tool":
            msg = {"role": "user", "content": f"Tool result ({msg.get('tool_call_id', '')}): "
                                              f"{msg.get('content') or ''}"}
        out.append(msg)
    return out


class Generic(Family):
    name = "generic"
    tool_format = "generic"

    def detect(self, template: str) -> bool:
        return True

    def chat_format(self, template: str, traits: TemplateTraits) -> ChatFormat:
        think = think_tags(template)
        return ChatFormat(traits.family, self.tool_format, think, False, THINK if think else (),
                          call_syntax=CALL_SYNTAX)

    def history(self, messages: list[dict]) -> list[dict]:
        return generic_history(messages)

    def parse_calls(self, text: str, final: bool, tools: dict,
                    memo: ParseMemo | None = None) -> Parsed:
        return parse_generic(text, final, tools, memo)

    def tool_grammar(self, g: CallGrammar, fmt: ChatFormat) -> Forced:
        lit, calls = g.lit, g.json_calls("arguments")
        return Forced(g.conv.grammar(f'{lit(chr(123) + chr(34) + "tool_calls" + chr(34) + ": [")} '
                                     f'{g.many(calls, ", ")} {lit("]" + chr(125))}'))
