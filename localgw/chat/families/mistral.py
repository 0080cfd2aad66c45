"""Mistral: `[TOOL_CALLS]` then a JSON list of calls (v3, e.g. Nemo) or `name[ARGS]{…}` calls
(v11+, e.g. Small 3.2, Ministral); reasoning in `[THINK]…[/THINK]`; call ids of 9 letters or
digits.
"""

from __future__ import annotations

import hashlib

from localgw.chat.families.base import CallGrammar, ChatFormat, Family, Forced, TemplateTraits
from localgw.chat.families.common import (SPACE, WS, WS_COMMA, Call, Parsed, begin_parse,
                                          json_args, json_call)
from localgw.chat.memo import ParseMemo

MISTRAL_THINK = ("[THINK]", "[/THINK]")

MISTRAL_CALLS, MISTRAL_ARGS = "[TOOL_CALLS]", "[ARGS]"


def parse_mistral(text: str, final: bool, tools: dict, memo: ParseMemo | None = None) -> Parsed:
    """Content, then `[TOOL_CALLS]` with a JSON list (v3) or `name[ARGS]{…}` calls (v11+)."""
    memo = ParseMemo() if memo is None else memo
    pos, content, calls, resumed = begin_parse("mistral", text, (MISTRAL_CALLS,), final, memo)
    if resumed is not None:
        (in_list,) = resumed
        if in_list:
            return _mistral_list(text, pos, final, memo, content, calls)
        pos = memo.skip(WS, text, pos)
    while text.startswith(MISTRAL_CALLS, pos):
        pos += len(MISTRAL_CALLS)
        first = memo.skip(SPACE, text, pos)
        if text.startswith("[", first):  # v3: a JSON list of call objects
            return _mistral_list(text, first + 1, final, memo, content, calls)
        args_at = memo.find(text, MISTRAL_ARGS, pos)
        if args_at < 0:
            return Parsed(content, calls)
        name = text[pos:args_at].strip()
        args, end, done = json_args(text, args_at + len(MISTRAL_ARGS), final, memo)
        calls.append(Call(name, args, done))
        if end < 0:
            break
        memo.mark("mistral", end, calls, content, False)
        pos = memo.skip(WS, text, end)
    return Parsed(content, calls)


def _mistral_list(text: str, pos: int, final: bool, memo: ParseMemo, content: str,
                  calls: list[Call]) -> Parsed:
    """The calls of a v3 list from text[pos:], after its `[` or a call of it."""
    while True:
        pos = memo.skip(WS_COMMA, text, pos)
        if pos >= len(text) or text[pos] == "]":
            return Parsed(content, calls)
        call, end, pending = json_call(text, pos, final, memo)
        if call is not None:
            calls.append(call)
        if pending or end < 0:
            return Parsed(content, calls)
        pos = end
        memo.mark("mistral", pos, calls, content, True)




def mistral_call_id(call_id: str) -> str:
    """Mistral templates insist on 9-character alphanumeric call ids: map any id to one, stably."""
    if len(call_id) == 9 and call_id.isalnum():
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()
    return "".join(c for c in digest if c.isalnum())[:9]


def with_mistral_ids(messages: list[dict]) -> list[dict]:
    out = []
    for msg in messages:
        msg = dict(msg)
        if msg.get("tool_calls"):
            msg["tool_calls"] = [{**c, "id": mistral_call_id(c["id"] or "call")}
                                 for c in msg["tool_calls"]]
        if msg.get("tool_call_id"):
            msg["tool_call_id"] = mistral_call_id(msg["tool_call_id"])
        out.append(msg)
    return out


class Mistral(Family):
    name = "mistral"
    tool_format = "mistral"
    markers = (MISTRAL_CALLS,)
    renders_tools = True

    def chat_format(self, template: str, traits: TemplateTraits) -> ChatFormat:
        reasoning = MISTRAL_THINK if MISTRAL_THINK[0] in template else None
        return ChatFormat(self.name, self.tool_format, reasoning, True,
                          (MISTRAL_CALLS, MISTRAL_ARGS, "[CALL_ID]", *MISTRAL_THINK),
                          mistral_v11=MISTRAL_ARGS in template)

    def history(self, messages: list[dict]) -> list[dict]:
        return with_mistral_ids(messages)

    def parse_calls(self, text: str, final: bool, tools: dict,
                    memo: ParseMemo | None = None) -> Parsed:
        return parse_mistral(text, final, tools, memo)

    def tool_grammar(self, g: CallGrammar, fmt: ChatFormat) -> Forced:
        if fmt.mistral_v11:
            g.single_only("Mistral [ARGS]")
            return Forced(g.conv.grammar(g.args[0]),
                          prefill=f"{MISTRAL_CALLS}{g.names[0]}{MISTRAL_ARGS}")
        return Forced(g.conv.grammar(f'{g.lit("[")} {g.many(g.json_calls("arguments"), ", ")} '
                                     f'{g.lit("]")}'), prefill=MISTRAL_CALLS)
