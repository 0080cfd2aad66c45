"""Split a model's chain of thought out of its reply. Pure functions of the text so far.

Like the tool-call parsers (see toolcalls), these take an optional `memo` kept for one growing
text: the search for a closing tag goes on from where it stopped, and parse_harmony starts after
the last message whose end it has seen. The result is the same with or without a kept memo.
"""

from __future__ import annotations

import re

from localgw.chat.memo import ParseMemo
from localgw.chat.toolcalls import Call, _args, _held_marker, _starts_marker

_WS = " \t\r\n"
_WS_RUN = re.compile(r"[ \t\r\n]*")


def split_think(text: str, open_tag: str, close_tag: str, inside: bool,
                final: bool, memo: ParseMemo | None = None) -> tuple[str, str]:
    """(reasoning, rest) for `<think>…</think>`-style blocks.

    `inside`: the prompt already opened the block, so the output may hold only the closing tag.
    Reasoning loses its surrounding whitespace; trailing whitespace is held back until it is
    known not to be the end, so streamed pieces always add up to the final text.
    """
    memo = ParseMemo() if memo is None else memo
    start = 0
    if not inside:
        first = memo.skip(_WS_RUN, text, 0)
        if text.startswith(open_tag, first):
            start = first + len(open_tag)
        elif not final and (first == len(text) or _starts_marker(text, first, open_tag)):
            return "", ""
        else:
            return "", text
    close = memo.find(text, close_tag, start)
    if close < 0:
        reasoning = text[start:]
        if not final:
            reasoning = reasoning[:len(reasoning) - _held_marker(reasoning, (close_tag,))]
            reasoning = reasoning.rstrip(_WS)
        return reasoning.strip(_WS), ""
    return text[start:close].strip(_WS), text[close + len(close_tag):].lstrip(_WS)


# ---- gpt-oss "harmony": <|channel|>NAME[ to=functions.X][ <|constrain|>json]<|message|>BODY<|end|>

H_START, H_CHANNEL, H_MESSAGE = "<|start|>", "<|channel|>", "<|message|>"
H_ENDS = ("<|end|>", "<|call|>", "<|return|>", "<|start|>")


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
            body = body[:len(body) - _held_marker(body, H_ENDS)]
        channel = header.split()[0] if header.split() else ""
        if "to=functions." in header:
            name = header.split("to=functions.", 1)[1].split()[0].split("<")[0]
            args, _, done = _args(text, body_start, final or bool(ends), memo,
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
