"""Tool-call parsers, one per native format. Pure functions of the text so far.

Each parser returns the content and the calls found in `text`. With `final=False` the text may
end mid-call: content that could be the start of a marker is held back, and a call's arguments
are the longest prefix that is still valid JSON once closed (see jsonprefix). Every result is a
prefix-extension of the previous one, so the streaming layer can send the difference.

The streaming layer calls a parser again on a longer text after every token. With a kept `memo`
(memo.ParseMemo, one per growing text) a call does the work of what is new, not of everything
so far: marker searches, runs of whitespace and JSON scans go on from where they stopped, XML
parameters already closed are not read again, and each loop over calls starts after the last
call it finished (one whose end it has seen, which no later text can change). So the Python work
of a reply is linear in its length however finely it is streamed; what each parse still does
over the whole text is copying in C (slices of it, the arguments so far). The results are the
same with or without a kept memo. Positions are indices into `text` throughout: a block's end is
passed as `stop` rather than cut out as a copy.
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


_WS = re.compile(r"[ \t\r\n]*")          # JSON's whitespace (runs: see ParseMemo.skip)
_SPACE = re.compile(r"\s*")              # what str.strip() strips
_WS_COMMA = re.compile(r"[ \t\r\n,]*")   # between the calls of a list
_WS_SEMI = re.compile(r"[ \t\r\n;]*")    # between Llama 3's calls


def _starts_marker(text: str, pos: int, marker: str) -> bool:
    """text[pos:] is a proper start of `marker` (without copying a long rest of the text)."""
    return len(text) - pos < len(marker) and marker.startswith(text[pos:])


def _held_marker(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a marker."""
    best = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:n]):
                best = n
                break
    return best


def _content_before(text: str, markers: tuple[str, ...], final: bool,
                    memo: ParseMemo) -> tuple[str, int]:
    """Content up to the first marker (or a held-back partial marker); and where it ends."""
    found = [i for i in (memo.find(text, m) for m in markers) if i >= 0]
    if found:
        cut = min(found)
        return text[:cut], cut
    if final:
        return text, len(text)
    keep = _held_marker(text, markers)
    return text[:len(text) - keep], len(text)


def _begin(parser: str, text: str, markers: tuple[str, ...], final: bool,
           memo: ParseMemo) -> tuple[int, str, list[Call], tuple | None]:
    """Where a parser whose calls follow content starts: after its last mark, or at the first
    marker. (position, content, calls, the rest of the mark's state or None at the start)."""
    resumed = memo.resume(parser)
    if resumed is None:
        content, pos = _content_before(text, markers, final, memo)
        return pos, content, [], None
    pos, calls, (content, *more) = resumed
    return pos, content, calls, tuple(more)


_NAME_FIRST = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


def _args(text: str, start: int, final: bool, memo: ParseMemo | None = None,
          stop: int | None = None) -> tuple[str, int, bool]:
    """Raw JSON arguments at text[start:stop]: (text, end index or -1, complete)."""
    memo = ParseMemo() if memo is None else memo
    start = memo.skip(_WS, text, start, stop)
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
        args, args_end, args_done = _args(text, m.end(), final, memo, stop)
        if args_end < 0:
            return Call(name, args, args_done), -1, False
        j = memo.skip(_WS, text, args_end, stop)
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


# ---- Hermes / Qwen: <tool_call>{json}</tool_call>, or <tool_call><function=…> (Qwen3-Coder, 3.5)

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
    pos, content, calls, resumed = _begin("hermes", text, (TOOL_CALL_OPEN,), final, memo)
    after_block = resumed is not None
    while True:
        if after_block:
            pos = memo.skip(_WS, text, pos)
            if pos < len(text) and not text.startswith(TOOL_CALL_OPEN, pos):
                tail = text[pos:]
                if final or not TOOL_CALL_OPEN.startswith(tail):
                    content += tail if final else tail[:len(tail) - _held_marker(tail, (TOOL_CALL_OPEN,))]
                break
        if not text.startswith(TOOL_CALL_OPEN, pos):
            break
        start = pos + len(TOOL_CALL_OPEN)
        close = memo.find(text, TOOL_CALL_CLOSE, start)
        stop = close if close >= 0 else len(text)
        block_final = final or close >= 0
        first = memo.skip(_SPACE, text, start, stop)  # where the block's body starts, past spaces
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


# ---- Llama 3.x: the whole reply is {"name": …, "parameters": …}, maybe after <|python_tag|>

PYTHON_TAG = "<|python_tag|>"


def parse_llama3(text: str, final: bool, tools: dict, memo: ParseMemo | None = None) -> Parsed:
    """A reply that is only calls (JSON objects, `;`-separated), or only content."""
    memo = ParseMemo() if memo is None else memo
    resumed = memo.resume("llama3")
    if resumed is None:
        pos = memo.skip(_SPACE, text, 0)
        if text.startswith(PYTHON_TAG, pos):
            pos = memo.skip(_SPACE, text, pos + len(PYTHON_TAG))
        elif not final and (pos == len(text) or _starts_marker(text, pos, PYTHON_TAG)):
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


# ---- Mistral: [TOOL_CALLS][{…}, …] (v3) or [TOOL_CALLS]name[ARGS]{…} (v11+)

MISTRAL_CALLS, MISTRAL_ARGS = "[TOOL_CALLS]", "[ARGS]"


def parse_mistral(text: str, final: bool, tools: dict, memo: ParseMemo | None = None) -> Parsed:
    """Content, then `[TOOL_CALLS]` with a JSON list (v3) or `name[ARGS]{…}` calls (v11+)."""
    memo = ParseMemo() if memo is None else memo
    pos, content, calls, resumed = _begin("mistral", text, (MISTRAL_CALLS,), final, memo)
    if resumed is not None:
        (in_list,) = resumed
        if in_list:
            return _mistral_list(text, pos, final, memo, content, calls)
        pos = memo.skip(_WS, text, pos)
    while text.startswith(MISTRAL_CALLS, pos):
        pos += len(MISTRAL_CALLS)
        first = memo.skip(_SPACE, text, pos)
        if text.startswith("[", first):  # v3: a JSON list of call objects
            return _mistral_list(text, first + 1, final, memo, content, calls)
        args_at = memo.find(text, MISTRAL_ARGS, pos)
        if args_at < 0:
            return Parsed(content, calls)
        name = text[pos:args_at].strip()
        args, end, done = _args(text, args_at + len(MISTRAL_ARGS), final, memo)
        calls.append(Call(name, args, done))
        if end < 0:
            break
        memo.mark("mistral", end, calls, content, False)
        pos = memo.skip(_WS, text, end)
    return Parsed(content, calls)


def _mistral_list(text: str, pos: int, final: bool, memo: ParseMemo, content: str,
                  calls: list[Call]) -> Parsed:
    """The calls of a v3 list from text[pos:], after its `[` or a call of it."""
    while True:
        pos = memo.skip(_WS_COMMA, text, pos)
        if pos >= len(text) or text[pos] == "]":
            return Parsed(content, calls)
        call, end, pending = json_call(text, pos, final, memo)
        if call is not None:
            calls.append(call)
        if pending or end < 0:
            return Parsed(content, calls)
        pos = end
        memo.mark("mistral", pos, calls, content, True)


# ---- DeepSeek: <｜tool▁call▁begin｜>[function<｜tool▁sep｜>]name[\n```json\n]{…}[\n```]<｜tool▁call▁end｜>

DS_CALLS_BEGIN, DS_CALL_BEGIN = "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>"
DS_SEP = "<｜tool▁sep｜>"
FENCE = "```json"


def parse_deepseek(text: str, final: bool, tools: dict, memo: ParseMemo | None = None) -> Parsed:
    """Content, then `<｜tool▁call▁begin｜>` calls, in V3 or R1 (fenced JSON) style."""
    memo = ParseMemo() if memo is None else memo
    pos, content, calls, _ = _begin("deepseek", text, (DS_CALLS_BEGIN, DS_CALL_BEGIN), final, memo)
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
            elif not final and _starts_marker(text, at, FENCE):
                break
        else:
            name = head
        args, end, done = _args(text, at, final, memo)
        calls.append(Call(name, args, done))
        if end < 0:
            break
        pos = end
        memo.mark("deepseek", pos, calls, content)
    return Parsed(content, calls)


# ---- gpt-oss (harmony): handled with its channels in reasoning.parse_harmony

# ---- Generic fallback for templates without tools: {"tool_calls": [{…}, …]}

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
            first = memo.skip(_SPACE, text, 0)
            if not final and first < len(text) and _GENERIC_START.startswith(
                    _NON_SPACES.match(text, first).group().replace(" ", "")):
                return Parsed("", [])
            return Parsed(text, [])
        calls: list[Call] = []
        pos = m.end()
    else:
        pos, calls, _ = resumed
    while True:
        pos = memo.skip(_WS_COMMA, text, pos)
        if pos >= len(text) or text[pos] == "]":
            return Parsed("", calls)
        call, end, pending = json_call(text, pos, final, memo)
        if call is not None:
            calls.append(call)
        if pending or end < 0:
            return Parsed("", calls)
        pos = end
        memo.mark("generic", pos, calls)


PARSERS = {"hermes": parse_hermes, "qwen3-coder": parse_hermes, "llama3": parse_llama3,
           "mistral": parse_mistral, "deepseek": parse_deepseek, "generic": parse_generic}
