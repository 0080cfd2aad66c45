"""Text helpers the families' parsers share. Pure functions of the text so far.

A tool-call parser (Family.parse_calls) returns the content and the calls found in `text`. With
`final=False` the text may end mid-call: content that could be the start of a marker is held
back, and a call's arguments are the longest prefix that is still valid JSON once closed (see
jsonprefix). Every result is a prefix-extension of the previous one, so the streaming layer can
send the difference.

The streaming layer calls a parser again on a longer text after every token. With a kept `memo`
(memo.ParseMemo, one per growing text) a call does the work of what is new, not of everything
so far: marker searches, runs of whitespace and JSON scans go on from where they stopped, XML
parameters already closed are not read again, and each loop over calls starts after the last
call it finished (one whose end it has seen, which no later text can change). So the Python work
of a reply is linear in its length however finely it is streamed; what each parse still does
over the whole text is copying in C (slices of it, the arguments so far). The results are the
same with or without a kept memo. Positions are indices into `text` throughout: a block's end is
passed as `stop` rather than cut out as a copy.

Reasoning blocks (split_think) follow the same rules: the search for a closing tag goes on from
where it stopped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from localgw.chat.memo import ParseMemo


@dataclass
class Call:
    name: str
    arguments: str
    complete: bool = True


@dataclass
class Parsed:
    content: str
    calls: list[Call]


WS = re.compile(r"[ \t\r\n]*")          # JSON's whitespace (runs: see ParseMemo.skip)
SPACE = re.compile(r"\s*")              # what str.strip() strips
WS_COMMA = re.compile(r"[ \t\r\n,]*")   # between the calls of a list


def starts_marker(text: str, pos: int, marker: str) -> bool:
    """text[pos:] is a proper start of `marker` (without copying a long rest of the text)."""
    return len(text) - pos < len(marker) and marker.startswith(text[pos:])


def held_marker(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a marker."""
    best = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:n]):
                best = n
                break
    return best


def content_before(text: str, markers: tuple[str, ...], final: bool,
                    memo: ParseMemo) -> tuple[str, int]:
    """Content up to the first marker (or a held-back partial marker); and where it ends."""
    found = [i for i in (memo.find(text, m) for m in markers) if i >= 0]
    if found:
        cut = min(found)
        return text[:cut], cut
    if final:
        return text, len(text)
    keep = held_marker(text, markers)
    return text[:len(text) - keep], len(text)


def begin_parse(parser: str, text: str, markers: tuple[str, ...], final: bool,
           memo: ParseMemo) -> tuple[int, str, list[Call], tuple | None]:
    """Where a parser whose calls follow content starts: after its last mark, or at the first
    marker. (position, content, calls, the rest of the mark's state or None at the start)."""
    resumed = memo.resume(parser)
    if resumed is None:
        content, pos = content_before(text, markers, final, memo)
        return pos, content, [], None
    pos, calls, (content, *more) = resumed
    return pos, content, calls, tuple(more)


_NAME_FIRST = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


def json_args(text: str, start: int, final: bool, memo: ParseMemo | None = None,
          stop: int | None = None) -> tuple[str, int, bool]:
    """Raw JSON arguments at text[start:stop]: (text, end index or -1, complete)."""
    memo = ParseMemo() if memo is None else memo
    start = memo.skip(WS, text, start, stop)
    s = memo.scan(text, start, stop)
    if s.end >= 0:
        return text[start:s.end], s.end, True
    if s.broken or final:
        prefix = text[start:s.healable] if s.healable > start else ""
        return (prefix + s.suffix) if prefix else "{}", -1, True
    return text[start:s.healable], -1, False


def json_call(text: str, pos: int, final: bool, memo: ParseMemo | None = None,
              stop: int | None = None) -> tuple[Call | None, int, bool]:
    """One `{"name": …, "arguments"|"parameters": …}` object at text[pos:stop].

    Returns (call, end, pending): `end` is just past the object (-1 while it is open); `pending`
    means nothing can be said yet; a None call with pending False means "not a call".
    """
    memo = ParseMemo() if memo is None else memo
    stop = len(text) if stop is None else stop
    m = _NAME_FIRST.match(text, pos, stop)
    if m:
        name = json.loads(f'"{m.group(1)}"')
        args, args_end, args_done = json_args(text, m.end(), final, memo, stop)
        if args_end < 0:
            return Call(name, args, args_done), -1, False
        j = memo.skip(WS, text, args_end, stop)
        if j < stop and text[j] == "}":
            return Call(name, args, True), j + 1, False
        if j < stop and text[j] == ",":  # more keys after the arguments: read the object whole
            whole = memo.scan(text, pos, stop)
            return Call(name, args, whole.end >= 0 or final), whole.end, False
        return Call(name, args, final), -1, False
    whole = memo.scan(text, pos, stop)
    if whole.end < 0 and not whole.broken and not final:
        return None, -1, True
    end = whole.end
    try:
        obj = json.loads(text[pos:end]) if end >= 0 else None
    except (ValueError, RecursionError):  # nested deeper than json can read: not a call
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        args = obj.get("arguments", obj.get("parameters", {}))
        raw = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        return Call(obj["name"], raw), end, False
    return None, end, False


# ---- <think>…</think>-style reasoning

THINK = ("<think>", "</think>")
_WS_CHARS = " \t\r\n"


def think_tags(template: str) -> tuple[str, str] | None:
    """`<think>` tags when the template writes either of them."""
    return THINK if "<think>" in template or "</think>" in template else None


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
        first = memo.skip(WS, text, 0)
        if text.startswith(open_tag, first):
            start = first + len(open_tag)
        elif not final and (first == len(text) or starts_marker(text, first, open_tag)):
            return "", ""
        else:
            return "", text
    close = memo.find(text, close_tag, start)
    if close < 0:
        reasoning = text[start:]
        if not final:
            reasoning = reasoning[:len(reasoning) - held_marker(reasoning, (close_tag,))]
            reasoning = reasoning.rstrip(_WS_CHARS)
        return reasoning.strip(_WS_CHARS), ""
    return text[start:close].strip(_WS_CHARS), text[close + len(close_tag):].lstrip(_WS_CHARS)
