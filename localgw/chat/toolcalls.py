"""Tool-call parsers, one per native format. Pure functions of the text so far.

Each parser returns the content and the calls found in `text`. With `final=False` the text may
end mid-call: content that could be the start of a marker is held back, and a call's arguments
are the longest prefix that is still valid JSON once closed (see jsonprefix). Every result is a
prefix-extension of the previous one, so the streaming layer can send the difference.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from localgw.chat.jsonprefix import scan


@dataclass
class Call:
    name: str
    arguments: str
    complete: bool = True


@dataclass
class Parsed:
    content: str
    calls: list[Call]


def _held_marker(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a marker."""
    best = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:n]):
                best = n
                break
    return best


def _content_before(text: str, markers: tuple[str, ...], final: bool) -> tuple[str, int]:
    """Content up to the first marker (or a held-back partial marker); and where it ends."""
    found = [i for i in (text.find(m) for m in markers) if i >= 0]
    if found:
        cut = min(found)
        return text[:cut], cut
    if final:
        return text, len(text)
    keep = _held_marker(text, markers)
    return text[:len(text) - keep], len(text)


_NAME_FIRST = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


def _args(text: str, start: int, final: bool) -> tuple[str, int, bool]:
    """Raw JSON arguments at text[start:]: (text, end index or -1, complete)."""
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    s = scan(text, start)
    if s.end >= 0:
        return text[start:s.end], s.end, True
    if s.broken or final:
        prefix = text[start:s.healable] if s.healable > start else ""
        return (prefix + s.suffix) if prefix else "{}", -1, True
    return text[start:s.healable], -1, False


def json_call(text: str, pos: int, final: bool) -> tuple[Call | None, int, bool]:
    """One `{"name": …, "arguments"|"parameters": …}` object at text[pos:].

    Returns (call, end, pending): `end` is just past the object (-1 while it is open); `pending`
    means nothing can be said yet; a None call with pending False means "not a call".
    """
    m = _NAME_FIRST.match(text, pos)
    if m:
        name = json.loads(f'"{m.group(1)}"')
        args, args_end, args_done = _args(text, m.end(), final)
        if args_end < 0:
            return Call(name, args, args_done), -1, False
        j = args_end
        while j < len(text) and text[j] in " \t\r\n":
            j += 1
        if j < len(text) and text[j] == "}":
            return Call(name, args, True), j + 1, False
        if j < len(text) and text[j] == ",":  # more keys after the arguments: read the object whole
            whole = scan(text, pos)
            return Call(name, args, whole.end >= 0 or final), whole.end, False
        return Call(name, args, final), -1, False
    whole = scan(text, pos)
    if whole.end < 0 and not whole.broken and not final:
        return None, -1, True
    end = whole.end
    try:
        obj = json.loads(text[pos:end]) if end >= 0 else None
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        args = obj.get("arguments", obj.get("parameters", {}))
        raw = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        return Call(obj["name"], raw), end, False
    return None, end, False


# ---- Hermes / Qwen: <tool_call>{json}</tool_call>, or <tool_call><function=…> (Qwen3-Coder, 3.5)

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_FUNCTION = re.compile(r"\s*<function=([^>\n]+)>")
_PARAM = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.S)


def _xml_call(body: str, final: bool, tools: dict) -> Call | None:
    m = _FUNCTION.match(body)
    if not m:
        return None
    name = m.group(1).strip()
    props = ((tools.get(name) or {}).get("properties") or {})
    parts = []
    for p in _PARAM.finditer(body, m.end()):
        key, raw = p.group(1).strip(), p.group(2)
        if (props.get(key) or {}).get("type") == "string":
            value = raw
        else:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        parts.append(f"{json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}")
    done = final or "</function>" in body
    return Call(name, "{" + ", ".join(parts) + ("}" if done else ""), done)


def parse_hermes(text: str, final: bool, tools: dict) -> Parsed:
    content, pos = _content_before(text, (TOOL_CALL_OPEN,), final)
    calls: list[Call] = []
    while text.startswith(TOOL_CALL_OPEN, pos):
        start = pos + len(TOOL_CALL_OPEN)
        close = text.find(TOOL_CALL_CLOSE, start)
        body = text[start:close if close >= 0 else len(text)]
        block_final = final or close >= 0
        stripped = body.lstrip()
        if stripped.startswith("<function=") or (stripped.startswith("<") and not block_final):
            call = _xml_call(body, block_final, tools)
        elif stripped.startswith("{"):
            call, _, pending = json_call(body, 0, block_final)
            if pending:
                break
        elif not stripped and not block_final:
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
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and not text.startswith(TOOL_CALL_OPEN, pos):
            tail = text[pos:]
            if final or not TOOL_CALL_OPEN.startswith(tail):
                content += tail if final else tail[:len(tail) - _held_marker(tail, (TOOL_CALL_OPEN,))]
            break
    return Parsed(content, calls)


# ---- Llama 3.x: the whole reply is {"name": …, "parameters": …}, maybe after <|python_tag|>

PYTHON_TAG = "<|python_tag|>"


def parse_llama3(text: str, final: bool, tools: dict) -> Parsed:
    body = text.lstrip()
    offset = len(text) - len(body)
    if body.startswith(PYTHON_TAG):
        offset += len(PYTHON_TAG)
        body = text[offset:].lstrip()
        offset = len(text) - len(body)
    elif not final and (not body or PYTHON_TAG.startswith(body)):
        return Parsed("", [])
    if not body and not final:
        return Parsed("", [])
    if not body.startswith("{"):
        return Parsed(text, [])
    calls, pos = [], offset
    while True:
        call, end, pending = json_call(text, pos, final)
        if pending:
            return Parsed("", calls)
        if call is None:
            return Parsed(text if not calls else "", calls)
        calls.append(call)
        if end < 0:
            return Parsed("", calls)
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n;":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            return Parsed("", calls)


# ---- Mistral: [TOOL_CALLS][{…}, …] (v3) or [TOOL_CALLS]name[ARGS]{…} (v11+)

MISTRAL_CALLS, MISTRAL_ARGS = "[TOOL_CALLS]", "[ARGS]"


def parse_mistral(text: str, final: bool, tools: dict) -> Parsed:
    content, pos = _content_before(text, (MISTRAL_CALLS,), final)
    calls: list[Call] = []
    while text.startswith(MISTRAL_CALLS, pos):
        pos += len(MISTRAL_CALLS)
        rest = text[pos:].lstrip()
        if rest.startswith("["):  # v3: a JSON list of call objects
            pos = len(text) - len(rest) + 1
            while True:
                while pos < len(text) and text[pos] in " \t\r\n,":
                    pos += 1
                if pos >= len(text) or text[pos] == "]":
                    return Parsed(content, calls)
                call, end, pending = json_call(text, pos, final)
                if call is not None:
                    calls.append(call)
                if pending or end < 0:
                    return Parsed(content, calls)
                pos = end
        args_at = text.find(MISTRAL_ARGS, pos)
        if args_at < 0:
            return Parsed(content, calls)
        name = text[pos:args_at].strip()
        args, end, done = _args(text, args_at + len(MISTRAL_ARGS), final)
        calls.append(Call(name, args, done))
        if end < 0:
            break
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
    return Parsed(content, calls)


# ---- DeepSeek: <｜tool▁call▁begin｜>[function<｜tool▁sep｜>]name[\n```json\n]{…}[\n```]<｜tool▁call▁end｜>

DS_CALLS_BEGIN, DS_CALL_BEGIN = "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>"
DS_SEP = "<｜tool▁sep｜>"


def parse_deepseek(text: str, final: bool, tools: dict) -> Parsed:
    content, pos = _content_before(text, (DS_CALLS_BEGIN, DS_CALL_BEGIN), final)
    calls: list[Call] = []
    while True:
        begin = text.find(DS_CALL_BEGIN, pos)
        if begin < 0:
            break
        sep = text.find(DS_SEP, begin)
        if sep < 0:
            break
        head = text[begin + len(DS_CALL_BEGIN):sep].strip()
        at = sep + len(DS_SEP)
        if head == "function":  # R1 style: the name follows, then a json code fence
            newline = text.find("\n", at)
            if newline < 0:
                break
            name = text[at:newline].strip()
            at = newline + 1
            if text.startswith("```json", at):
                at += len("```json")
            elif not final and "```json".startswith(text[at:]):
                break
        else:
            name = head
        args, end, done = _args(text, at, final)
        calls.append(Call(name, args, done))
        if end < 0:
            break
        pos = end
    return Parsed(content, calls)


# ---- gpt-oss (harmony): handled with its channels in reasoning.parse_harmony

# ---- Generic fallback for templates without tools: {"tool_calls": [{…}, …]}

_GENERIC_HEAD = re.compile(r'\s*\{\s*"tool_calls"\s*:\s*\[')


def parse_generic(text: str, final: bool, tools: dict) -> Parsed:
    m = _GENERIC_HEAD.match(text)
    if not m:
        stripped = text.lstrip()
        if not final and stripped and '{"tool_calls": ['.startswith(stripped.replace(" ", "")[:16]):
            return Parsed("", [])
        return Parsed(text, [])
    calls, pos = [], m.end()
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return Parsed("", calls)
        call, end, pending = json_call(text, pos, final)
        if call is not None:
            calls.append(call)
        if pending or end < 0:
            return Parsed("", calls)
        pos = end


PARSERS = {"hermes": parse_hermes, "qwen3-coder": parse_hermes, "llama3": parse_llama3,
           "mistral": parse_mistral, "deepseek": parse_deepseek, "generic": parse_generic}
