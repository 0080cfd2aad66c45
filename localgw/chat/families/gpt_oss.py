"""gpt-oss and its "harmony" format: every reply is messages in channels,
`<|channel|>NAME[ to=functions.X][ <|constrain|>json]<|message|>BODY<|end|>`: the analysis channel
is reasoning, a message to `functions.X` is a call, the rest is content.

Like the other parsers (see common.py), parse_harmony takes an optional `memo` kept for one
growing text and starts after the last message whose end it has seen.
"""

from __future__ import annotations

from localgw.chat.families.base import CallGrammar, ChatFormat, Family, Forced, TemplateTraits
from localgw.chat.families.common import Call, held_marker, json_args
from localgw.chat.memo import ParseMemo


H_START, H_CHANNEL, H_MESSAGE = "<|start|>", "<|channel|>", "<|message|>"
H_ENDS = ("<|end|>", "<|call|>", "<|return|>", "<|start|>")
H_CONSTRAIN = "<|constrain|>"


def parse_harmony(text: str, final: bool,
                  memo: ParseMemo | None = None) -> tuple[str, str, list[Call]]:
    """(reasoning, content, calls) of a harmony-format reply."""
    memo = ParseMemo() if memo is None else memo
    resumed = memo.resume("harmony")
    recipient = ""
    if resumed is None:
        reasoning, content, calls, pos = "", "", [], 0
        if not text.startswith((H_CHANNEL, H_START)) and (at := memo.find(text, H_CHANNEL)) >= 0:
            # the prompt ends with `<|start|>assistant`: a reply may open with ` to=functions.X`
            recipient, pos = text[:at], at
    else:
        pos, calls, (reasoning, content) = resumed
        pos = _past_end_markers(text, pos)
    while pos < len(text):
        if text.startswith(H_START, pos):
            nxt = memo.find(text, H_CHANNEL, pos)
            if nxt < 0:
                break
            recipient, pos = text[pos + len(H_START):nxt], nxt
        if not text.startswith(H_CHANNEL, pos):
            rest = text[pos:]
            if final or not any(m.startswith(rest) for m in (H_CHANNEL, H_START)):
                content += rest
            break
        head_end = memo.find(text, H_MESSAGE, pos)
        if head_end < 0:
            break
        header = text[pos + len(H_CHANNEL):head_end] + " " + recipient
        recipient = ""
        body_start = head_end + len(H_MESSAGE)
        ends = [i for i in (memo.find(text, m, body_start) for m in H_ENDS) if i >= 0]
        body_end = min(ends) if ends else len(text)
        body = text[body_start:body_end]
        if not ends and not final:
            body = body[:len(body) - held_marker(body, H_ENDS)]
        channel = header.split()[0] if header.split() else ""
        if "to=functions." in header:
            name = header.split("to=functions.", 1)[1].split()[0].split("<")[0]
            args, _, done = json_args(text, body_start, final or bool(ends), memo,
                                  body_start + len(body))
            calls.append(Call(name, args, done))
        elif channel == "analysis":
            reasoning += body
        else:
            content += body
        if not ends:
            break
        memo.mark("harmony", body_end, calls, reasoning, content)
        pos = _past_end_markers(text, body_end)
    return reasoning, content, calls


def _past_end_markers(text: str, pos: int) -> int:
    """Where the next message starts after the end markers of one that ended at `pos`."""
    for m in ("<|end|>", "<|call|>", "<|return|>"):
        if text.startswith(m, pos):
            pos += len(m)
    return pos


class GptOss(Family):
    name = "gpt-oss"
    tool_format = "harmony"
    markers = (H_CHANNEL,)
    renders_tools = True
    channels = True

    def chat_format(self, template: str, traits: TemplateTraits) -> ChatFormat:
        return ChatFormat(self.name, self.tool_format, "harmony", True,
                          (H_CHANNEL, H_MESSAGE, "<|end|>", H_START, H_CONSTRAIN))

    def parse_channels(self, text: str, final: bool,
                       memo: ParseMemo) -> tuple[str, str, list[Call]]:
        return parse_harmony(text, final, memo)

    def tool_grammar(self, g: CallGrammar, fmt: ChatFormat) -> Forced:
        g.single_only("gpt-oss")
        prefill = f"{H_CHANNEL}commentary to=functions.{g.names[0]} {H_CONSTRAIN}json{H_MESSAGE}"
        return Forced(g.conv.grammar(g.args[0]), prefill=prefill)
