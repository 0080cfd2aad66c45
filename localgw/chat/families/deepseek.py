"""DeepSeek (V3, V3.1, R1 and its distills): calls between its own tool tokens, V3 style
`<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}<｜tool▁call▁end｜>`, or R1 style (when the template
writes a json fence) `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME` and the arguments in a
```json fence; reasoning in `<think>`, which R1's prompt opens.
"""

from __future__ import annotations

from localgw.chat.families.base import CallGrammar, ChatFormat, Family, Forced, TemplateTraits
from localgw.chat.families.common import (THINK, Call, Parsed, begin_parse, json_args,
                                          starts_marker, think_tags)
from localgw.chat.memo import ParseMemo

DS_CALLS_BEGIN, DS_CALL_BEGIN = "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>"
DS_SEP = "<｜tool▁sep｜>"
FENCE = "```json"


def parse_deepseek(text: str, final: bool, tools: dict, memo: ParseMemo | None = None) -> Parsed:
    """Content, then `<｜tool▁call▁begin｜>` calls, in V3 or R1 (fenced JSON) style."""
    memo = ParseMemo() if memo is None else memo
    pos, content, calls, _ = begin_parse("deepseek", text, (DS_CALLS_BEGIN, DS_CALL_BEGIN), final,
                                         memo)
    while True:
        begin = memo.find(text, DS_CALL_BEGIN, pos)
        if begin < 0:
            break
        sep = memo.find(text, DS_SEP, begin)
        if sep < 0:
            break
        head = text[begin + len(DS_CALL_BEGIN):sep].strip()
        at = sep + len(DS_SEP)
        if head == "function":  # R1 style: the name follows, then a json code fence
            newline = memo.find(text, "\n", at)
            if newline < 0:
                break
            name = text[at:newline].strip()
            at = newline + 1
            if text.startswith(FENCE, at):
                at += len(FENCE)
            elif not final and starts_marker(text, at, FENCE):
                break
        else:
            name = head
        args, end, done = json_args(text, at, final, memo)
        calls.append(Call(name, args, done))
        if end < 0:
            break
        pos = end
        memo.mark("deepseek", pos, calls, content)
    return Parsed(content, calls)




DS_CALLS_END, DS_CALL_END = "<｜tool▁calls▁end｜>", "<｜tool▁call▁end｜>"
_SYNTAX = {True: f"{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}TOOL_NAME\n{FENCE}\n"
                 f"ARGUMENTS\n```{DS_CALL_END}{DS_CALLS_END}",
           False: f"{DS_CALLS_BEGIN}{DS_CALL_BEGIN}TOOL_NAME{DS_SEP}ARGUMENTS"
                  f"{DS_CALL_END}{DS_CALLS_END}"}


class DeepSeek(Family):
    name = "deepseek"
    tool_format = "deepseek"
    markers = (DS_CALLS_BEGIN,)
    renders_tools = True

    def chat_format(self, template: str, traits: TemplateTraits) -> ChatFormat:
        fenced = FENCE in template
        preserved = (DS_CALLS_BEGIN, DS_CALL_BEGIN, DS_SEP, DS_CALL_END, DS_CALLS_END, *THINK)
        return ChatFormat(self.name, self.tool_format, think_tags(template), traits.supports_tools,
                          preserved,
                          fenced_json=fenced, call_syntax=_SYNTAX[fenced])

    def parse_calls(self, text: str, final: bool, tools: dict,
                    memo: ParseMemo | None = None) -> Parsed:
        return parse_deepseek(text, final, tools, memo)

    def tool_grammar(self, g: CallGrammar, fmt: ChatFormat) -> Forced:
        lit, args, opening = g.lit, g.args, DS_CALLS_BEGIN + DS_CALL_BEGIN
        if fmt.fenced_json:  # R1 style: function<｜tool▁sep｜>NAME\n```json\n{…}\n```
            calls = [g.conv.add_rule(f"call-{i}", f'{lit(n + chr(10) + FENCE + chr(10))} {args[i]} '
                                                  f'{lit(chr(10) + "```")}')
                     for i, n in enumerate(g.names)]
            return Forced(g.conv.grammar(" | ".join(calls)), prefill=f"{opening}function{DS_SEP}")
        g.single_only("DeepSeek")
        return Forced(g.conv.grammar(g.args[0]), prefill=f"{opening}{g.names[0]}{DS_SEP}")
