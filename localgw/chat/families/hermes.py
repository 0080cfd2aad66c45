"""Hermes-style families: `<tool_call>` blocks, each a JSON `{"name": …, "arguments": …}` object
(Hermes 2/3, Qwen2.5, Qwen3, QwQ) or `<function=NAME><parameter=KEY>…` XML (Qwen3-Coder, Qwen3.5,
whose family is in qwen3_coder.py). The parser reads both bodies in any template of the kind.
"""

from __future__ import annotations

import json
import re

from localgw.chat.families.base import CallGrammar, ChatFormat, Family, Forced, TemplateTraits
from localgw.chat.families.common import (SPACE, THINK, WS, Call, Parsed, begin_parse,
                                          held_marker, json_call, think_tags)
from localgw.chat.memo import ParseMemo

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
PARAM_OPEN, PARAM_CLOSE = "<parameter=", "</parameter>"
_FUNCTION = re.compile(r"\s*<function=([^>\n]+)>")
_PARAM_HEAD = re.compile(r"<parameter=([^>\n]+)>\n?")


def _xml_call(text: str, start: int, stop: int, final: bool, tools: dict,
              memo: ParseMemo) -> Call | None:
    """`<function=NAME><parameter=KEY>VALUE</parameter>…</function>` at text[start:stop]."""
    m = _FUNCTION.match(text, start, stop)
    if not m:
        return None
    name = m.group(1).strip()
    props = ((tools.get(name) or {}).get("properties") or {})
    members = _xml_params(text, m.end(), stop, props, memo)
    done = final or memo.find(text, "</function>", start, stop) >= 0
    return Call(name, "{" + members + ("}" if done else ""), done)


def _xml_params(text: str, at: int, stop: int, props: dict, memo: ParseMemo) -> str:
    """`"key": value, …` for the closed parameters in text[at:stop], in order.

    The matches of re.finditer(r"<parameter=([^>\\n]+)>\\n?(.*?)\\n?</parameter>", re.S) over
    that text, found with marker searches instead: the value runs to the first `</parameter>`
    (less one newline before it), and a parameter without one ends the list, since any later
    one would need a later `</parameter>`. Parameters already closed are kept in the memo.
    """
    joined, pos = memo.notes.get(("xml", at), ("", at))  # pos: after the last one closed
    if pos > stop:  # the block ended before a kept parameter did: read them again
        joined, pos = "", at
    search = pos
    while (p := memo.find(text, PARAM_OPEN, search, stop)) >= 0:
        head = _PARAM_HEAD.match(text, p, stop)
        if head is None:
            search = p + 1
            continue
        close = memo.find(text, PARAM_CLOSE, head.end(), stop)
        if close < 0:
            break
        value_end = close - 1 if close > head.end() and text[close - 1] == "\n" else close
        part = _xml_part(head.group(1).strip(), text[head.end():value_end], props)
        joined = f"{joined}, {part}" if joined else part
        pos = search = close + len(PARAM_CLOSE)
    memo.notes[("xml", at)] = (joined, pos)
    return joined


def _xml_part(key: str, raw: str, props: dict) -> str:
    """One parameter as a JSON member: strings as written, other types parsed when they parse."""
    if (props.get(key) or {}).get("type") == "string":
        value = raw
    else:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than json can read
            value = raw
    return f"{json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}"


def parse_hermes(text: str, final: bool, tools: dict, memo: ParseMemo | None = None) -> Parsed:
    """Content, then `<tool_call>` blocks of JSON or of `<function=…>` XML."""
    memo = ParseMemo() if memo is None else memo
    pos, content, calls, resumed = begin_parse("hermes", text, (TOOL_CALL_OPEN,), final, memo)
    after_block = resumed is not None
    while True:
        if after_block:
            pos = memo.skip(WS, text, pos)
            if pos < len(text) and not text.startswith(TOOL_CALL_OPEN, pos):
                tail = text[pos:]
                if final or not TOOL_CALL_OPEN.startswith(tail):
                    content += tail if final else tail[:len(tail) - held_marker(tail, (TOOL_CALL_OPEN,))]
                break
        if not text.startswith(TOOL_CALL_OPEN, pos):
            break
        start = pos + len(TOOL_CALL_OPEN)
        close = memo.find(text, TOOL_CALL_CLOSE, start)
        stop = close if close >= 0 else len(text)
        block_final = final or close >= 0
        first = memo.skip(SPACE, text, start, stop)  # where the block's body starts, past spaces
        if text.startswith("<function=", first, stop) or (
                text.startswith("<", first, stop) and not block_final):
            call = _xml_call(text, start, stop, block_final, tools, memo)
        elif text.startswith("{", first, stop):
            call, _, pending = json_call(text, start, block_final, memo, stop)
            if pending:
                break
        elif first == stop and not block_final:
            break
        else:
            call = None
        if call is not None:
            calls.append(call)
        elif block_final:
            content += text[pos:close + len(TOOL_CALL_CLOSE) if close >= 0 else len(text)]
        if close < 0:
            break
        pos = close + len(TOOL_CALL_CLOSE)
        memo.mark("hermes", pos, calls, content)
        after_block = True
    return Parsed(content, calls)


class Hermes(Family):
    name = "hermes"
    tool_format = "hermes"
    markers = (TOOL_CALL_OPEN,)
    xml_tool_args = False  # whether its templates write call bodies as XML (ChatFormat's flag)

    def chat_format(self, template: str, traits: TemplateTraits) -> ChatFormat:
        return ChatFormat(self.name, self.tool_format, think_tags(template), True,
                          (TOOL_CALL_OPEN, TOOL_CALL_CLOSE, *THINK),
                          xml_tool_args=self.xml_tool_args)

    def parse_calls(self, text: str, final: bool, tools: dict,
                    memo: ParseMemo | None = None) -> Parsed:
        return parse_hermes(text, final, tools, memo)

    def tool_grammar(self, g: CallGrammar, fmt: ChatFormat) -> Forced:
        lit = g.lit
        block = g.conv.add_rule("block", f'{lit(TOOL_CALL_OPEN + chr(10))} {g.json_calls("arguments")} '
                                         f'{lit(chr(10) + TOOL_CALL_CLOSE)}')
        return Forced(g.conv.grammar(g.many(block, "\n")))
