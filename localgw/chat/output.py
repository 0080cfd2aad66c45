"""Turn generated text into typed message deltas (`chat.events`).

A parser sees the whole text so far, parses it (reasoning, content, tool calls) and sends the
difference from its last parse: streaming and non-streaming share this one path, so they cannot
disagree. Parsers only ever extend what they reported before.

The text of one reply only grows, so a MessageParser keeps a memo.ParseMemo for it (and one for
the part after the reasoning, which the tool parsers see): each parse goes on from what the last
one found instead of reading the text from its start again, so the Python work of a reply is
linear in its length however it is streamed (see chat.families.common). Calls before the memo's
last mark are not compared again: they cannot change, and their last difference has been sent.
"""

from __future__ import annotations

import secrets

from localgw.chat.events import Delta, ReasoningDelta, TextDelta, ToolCallDelta
from localgw.chat.families import family_of
from localgw.chat.families.base import ChatFormat
from localgw.chat.families.common import Call, split_think
from localgw.chat.memo import ParseMemo

class MessageParser:
    """One choice's reply; its deltas name the choice `index`."""

    def __init__(self, fmt: ChatFormat, *, tools: list[dict] | None = None,
                 inside_reasoning: bool = False, prefill: str = "",
                 parse_reasoning: bool = True, index: int = 0):
        self.fmt, self.index = fmt, index
        self.family = family_of(fmt)  # its tool-call parser, or its parser of whole replies
        self.tools = {t["function"]["name"]: t["function"].get("parameters") or {}
                      for t in tools or []}
        self.parse_tools = bool(tools)
        self.parse_reasoning = parse_reasoning and fmt.reasoning is not None
        self.inside = inside_reasoning
        self.text = prefill
        self._reasoning = ""
        self._content = ""
        self._calls: list[tuple[str, str, str]] = []  # (id, name, arguments sent)
        self._settled = 0                  # leading calls that cannot change, all sent
        self._memo = ParseMemo()           # for self.text
        self._rest_memo, self._rest_at = ParseMemo(), 0  # for self.text[self._rest_at:]

    @property
    def called_tools(self) -> bool:
        return bool(self._calls)

    def _parse(self, final: bool) -> tuple[str, str, list[Call], int]:
        """(reasoning, content, calls, how many leading calls are settled) of the text so far."""
        if self.family.channels:
            reasoning, content, calls = self.family.parse_channels(self.text, final, self._memo)
            if not self.parse_tools:
                return reasoning, content, [], 0
            return reasoning, content, calls, self._memo.settled
        reasoning, rest = "", self.text
        if self.parse_reasoning:
            reasoning, rest = split_think(self.text, *self.fmt.reasoning, self.inside, final,
                                          self._memo)
        if not self.parse_tools:
            return reasoning, rest, [], 0
        parsed = self.family.parse_calls(rest, final, self.tools, self._memo_for(rest))
        content = parsed.content
        if parsed.calls or not final:  # whitespace before a (possible) call is not content
            content = content.rstrip()
        return reasoning, content, parsed.calls, self._rest_memo.settled

    def _memo_for(self, rest: str) -> ParseMemo:
        """The memo of `rest`, a suffix of the text: a new one when it starts somewhere new."""
        at = len(self.text) - len(rest)
        if at != self._rest_at:
            self._rest_memo, self._rest_at = ParseMemo(), at
        return self._rest_memo

    def _diff(self, final: bool) -> list[Delta]:
        reasoning, content, calls, settled = self._parse(final)
        out: list[Delta] = []
        index = self.index
        if reasoning.startswith(self._reasoning) and len(reasoning) > len(self._reasoning):
            out.append(ReasoningDelta(index, reasoning[len(self._reasoning):]))
            self._reasoning = reasoning
        if content.startswith(self._content) and len(content) > len(self._content):
            out.append(TextDelta(index, content[len(self._content):]))
            self._content = content
        for i in range(self._settled, len(calls)):
            call = calls[i]
            if i == len(self._calls):
                call_id = f"call_{secrets.token_hex(12)}"
                out.append(ToolCallDelta(index, i, call_id, call.name))
                self._calls.append((call_id, call.name, ""))
            call_id, name, sent = self._calls[i]
            if call.arguments.startswith(sent) and len(call.arguments) > len(sent):
                out.append(ToolCallDelta(index, i, arguments=call.arguments[len(sent):]))
                self._calls[i] = (call_id, name, call.arguments)
        self._settled = settled
        return out

    def feed(self, text: str) -> list[Delta]:
        if not text:
            return []
        self.text += text
        if not self.parse_reasoning and not self.parse_tools and not self.family.channels:
            # plain text: the parse of the whole text is the text, so its difference is `text`
            # (one token's work per token, not a re-parse of everything so far)
            self._content = self.text
            return [TextDelta(self.index, text)]
        return self._diff(final=False)

    def finish(self) -> list[Delta]:
        return self._diff(final=True)
