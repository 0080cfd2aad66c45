"""Llama 3.x: a reply that calls tools is only calls, `{"name": …, "parameters": …}` objects
separated by `;`, maybe after `<|python_tag|>`; JSON after prose is prose.
"""

from __future__ import annotations

import re

from localgw.chat.families.base import CallGrammar, ChatFormat, Family, Forced, TemplateTraits
from localgw.chat.families.common import SPACE, Call, Parsed, json_call, starts_marker, think_tags
from localgw.chat.memo import ParseMemo

_WS_SEMI = re.compile(r"[ \t\r\n;]*")    # between the calls

PYTHON_TAG = "<|python_tag|>"


def parse_llama3(text: str, final: bool, tools: dict, memo: ParseMemo | None = None) -> Parsed:
    """A reply that is only calls (JSON objects, `;`-separated), or only content."""
    memo = ParseMemo() if memo is None else memo
    resumed = memo.resume("llama3")
    if resumed is None:
        pos = memo.skip(SPACE, text, 0)
        if text.startswith(PYTHON_TAG, pos):
            pos = memo.skip(SPACE, text, pos + len(PYTHON_TAG))
        elif not final and (pos == len(text) or starts_marker(text, pos, PYTHON_TAG)):
            return Parsed("", [])
        if pos == len(text) and not final:
            return Parsed("", [])
        if not text.startswith("{", pos):
            return Parsed(text, [])
        calls: list[Call] = []
    else:
        pos, calls, _ = resumed
    while True:
        if calls:  # after a call: another one, or the end of the calls
            pos = memo.skip(_WS_SEMI, text, pos)
            if pos >= len(text) or text[pos] != "{":
                return Parsed("", calls)
        call, end, pending = json_call(text, pos, final, memo)
        if pending:
            return Parsed("", calls)
        if call is None:
            return Parsed(text if not calls else "", calls)
        calls.append(call)
        if end < 0:
            return Parsed("", calls)
        pos = end
        memo.mark("llama3", pos, calls)




class Llama3(Family):
    name = "llama3"
    tool_format = "llama3"
    markers = (PYTHON_TAG, "<|start_header_id|>")
    renders_tools = True

    def chat_format(self, template: str, traits: TemplateTraits) -> ChatFormat:
        return ChatFormat(self.name, self.tool_format, think_tags(template), traits.supports_tools,
                          (PYTHON_TAG,))

    def parse_calls(self, text: str, final: bool, tools: dict,
                    memo: ParseMemo | None = None) -> Parsed:
        return parse_llama3(text, final, tools, memo)

    def tool_grammar(self, g: CallGrammar, fmt: ChatFormat) -> Forced:
        return Forced(g.conv.grammar(g.many(g.json_calls("parameters"), "; ")))
