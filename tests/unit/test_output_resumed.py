"""Parsing that goes on from its last parse (a kept ParseMemo) gives exactly what parsing the
whole text again gives: random replies in every tool format, with and without reasoning blocks,
cut anywhere and fed in random pieces. At every piece the parse equals a fresh parse of the text
so far, and the deltas are the ones a parser that re-reads everything each time sends."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localgw.chat.formats import ChatFormat, chat_format
from localgw.chat.jsonprefix import Scanner, scan
from localgw.chat.memo import ParseMemo
from localgw.chat.output import MessageParser
from tests.helpers import DATA, openai_deltas

TEMPLATES = {  # kind of reply: a template that produces it
    "hermes": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "hermes-think": "Qwen-Qwen3-0.6B.jinja",
    "qwen3-coder": "Qwen3-Coder.jinja",
    "qwen3.5-think": "Qwen3.5-4B.jinja",
    "llama3": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "mistral-v3": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "mistral-v11": "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "mistral-think": "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
    "deepseek-v3": "deepseek-ai-DeepSeek-V3.1.jinja",
    "deepseek-r1": "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
    "harmony": "openai-gpt-oss-120b.jinja",
    "generic": "google-gemma-2-2b-it.jinja",
}
TOOLS = [{"type": "function", "function": {"name": "write_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}]

MARKERS = ["<tool_call>", "</tool_call>", "<function=add>", "<function=write_file>", "</function>",
           "<parameter=content>", "<parameter=a>", "</parameter>", "<|python_tag|>", "[TOOL_CALLS]",
           "[ARGS]", "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
           "<｜tool▁call▁end｜>", "function", "```json", "```", "<|channel|>", "<|message|>",
           "<|start|>", "<|end|>", "<|call|>", "<|return|>", "<|constrain|>", "analysis", "final",
           "commentary to=functions.add ", "<think>", "</think>", "[THINK]", "[/THINK]",
           '{"tool_calls": [', '{"name": "add", "arguments": ', '"parameters": ']
BITS = ["{", "}", "[", "]", '"', ":", ",", " ", "\n", "\t", "\\", "\\n", "\\u00e9", "1", "-2.5e3",
        "true", "nul", '"k"', "é", "\u00a0", "<", ">", "/", "|", ";"]
words = st.lists(st.one_of(st.sampled_from(MARKERS + BITS), st.text("ab xyz09\n", max_size=5)),
                 max_size=6).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | words, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=6)
arguments = st.dictionaries(st.sampled_from(["path", "content", "a", "b", "x y"]), json_values, max_size=3)


def fmt_of(kind: str) -> ChatFormat:
    return chat_format((DATA / "templates" / TEMPLATES[kind]).read_text())


@st.composite
def raw_json(draw, value) -> str:
    """`value` as a model might write it: any spacing, sometimes with a trailing comma."""
    raw = json.dumps(value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 0, 2])),
                     separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])))
    if draw(st.integers(0, 5)) == 0 and raw.endswith("}") and raw != "{}":
        raw = raw[:-1] + ",}"
    return raw


@st.composite
def call_text(draw, kind: str) -> str:
    """One call in `kind`'s own format."""
    name = draw(st.sampled_from(["add", "write_file", "unknown"]))
    args = draw(arguments)
    if kind in ("qwen3-coder", "qwen3.5-think"):
        nl = draw(st.sampled_from(["\n", ""]))
        params = "".join(f"<parameter={k}>{nl}{v if isinstance(v, str) else json.dumps(v)}{nl}</parameter>\n"
                         for k, v in args.items())
        return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"
    raw = draw(raw_json(args))
    obj = f'{{"name": "{name}", "{"parameters" if kind == "llama3" else "arguments"}": {raw}}}'
    return {
        "hermes": f"<tool_call>\n{obj}\n</tool_call>", "hermes-think": f"<tool_call>\n{obj}\n</tool_call>",
        "llama3": obj, "mistral-v3": f"[TOOL_CALLS][{obj}]", "mistral-think": f"[TOOL_CALLS][{obj}]",
        "mistral-v11": f"[TOOL_CALLS]{name}[ARGS]{raw}",
        "deepseek-v3": f"<｜tool▁call▁begin｜>{name}<｜tool▁sep｜>{raw}<｜tool▁call▁end｜>",
        "deepseek-r1": f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{raw}\n```<｜tool▁call▁end｜>",
        "harmony": f"<|start|>assistant<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
                   f"{raw}<|call|>",
        "generic": obj,
    }[kind]


@st.composite
def replies(draw, kind: str) -> tuple[str, bool]:
    """(a reply in `kind`'s format cut anywhere, whether the prompt opened the reasoning block)."""
    fmt = fmt_of(kind)
    inside = isinstance(fmt.reasoning, tuple) and draw(st.booleans())
    parts = []
    if kind == "harmony" and draw(st.booleans()):
        parts.append(f"<|channel|>analysis<|message|>{draw(words)}<|end|>")
    elif isinstance(fmt.reasoning, tuple) and (inside or draw(st.booleans())):
        parts.append(("" if inside else fmt.reasoning[0]) + draw(words) + fmt.reasoning[1] + "\n\n")
    if draw(st.booleans()):
        parts.append(draw(words))
    calls = draw(st.lists(call_text(kind), max_size=3))
    if kind == "mistral-v3" and calls:  # one list holds them all
        calls = ["[TOOL_CALLS][" + ", ".join(c[len("[TOOL_CALLS]["):-1] for c in calls) + "]"]
    if kind == "generic" and calls:
        calls = ['{"tool_calls": [' + ", ".join(calls) + "]}"]
    if kind.startswith("deepseek") and calls:
        calls = ["<｜tool▁calls▁begin｜>" + "".join(calls) + "<｜tool▁calls▁end｜>"]
    parts.append(draw(st.sampled_from(["", "\n", "; "])).join(calls))
    if draw(st.booleans()):
        parts.append(draw(words))
    text = "".join(parts)
    return text[:draw(st.integers(0, len(text)))] if draw(st.booleans()) else text, inside


soups = st.lists(st.sampled_from(MARKERS + BITS + ["a", "ab ", "x"]), max_size=30).map("".join)


class RereadingParser(MessageParser):
    """The reference: every parse reads the whole text from its start and every call is compared."""

    def _parse(self, final: bool):
        self._memo, self._rest_memo = ParseMemo(), ParseMemo()
        return (*super()._parse(final)[:3], 0)


def parse_view(parser: MessageParser, final: bool):
    reasoning, content, calls, _ = parser._parse(final)
    return reasoning, content, [(c.name, c.arguments, c.complete) for c in calls]


def without_ids(deltas: list[dict]) -> list[dict]:
    text = json.dumps(deltas)
    for d in deltas:
        for call in d.get("tool_calls", []):
            if "id" in call:
                text = text.replace(call["id"], f"id{call['index']}")
    return json.loads(text)


def check(kind: str, text: str, inside: bool, cuts: list[int]) -> None:
    fmt = fmt_of(kind)
    kept = MessageParser(fmt, tools=TOOLS, inside_reasoning=inside)
    rereading = RereadingParser(fmt, tools=TOOLS, inside_reasoning=inside)
    kept_deltas, rereading_deltas = [], []
    bounds = sorted({c for c in cuts if 0 < c < len(text)} | {len(text)})
    start = 0
    for end in bounds:
        kept_deltas += kept.feed(text[start:end])
        rereading_deltas += rereading.feed(text[start:end])
        start = end
        fresh = MessageParser(fmt, tools=TOOLS, inside_reasoning=inside, prefill=text[:end])
        assert parse_view(kept, False) == parse_view(fresh, False)
    kept_deltas = openai_deltas(kept_deltas + kept.finish())
    rereading_deltas = openai_deltas(rereading_deltas + rereading.finish())
    fresh = MessageParser(fmt, tools=TOOLS, inside_reasoning=inside, prefill=text)
    assert parse_view(kept, True) == parse_view(fresh, True)
    assert without_ids(kept_deltas) == without_ids(rereading_deltas)


def merged(deltas: list[dict]) -> tuple[str, str, dict]:
    """What a client makes of `deltas`: reasoning, content, and each call's name and arguments."""
    reasoning, content, calls = "", "", {}
    for d in deltas:
        reasoning += d.get("reasoning_content", "")
        content += d.get("content", "")
        for call in d.get("tool_calls", []):
            name, args = calls.get(call["index"], ("", ""))
            calls[call["index"]] = (name + call["function"].get("name", ""),
                                    args + call["function"]["arguments"])
    return reasoning, content, calls


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
@SETTINGS
@given(data=st.data())
def test_replies_parse_the_same_resumed_as_afresh(kind, data):
    text, inside = data.draw(replies(kind), label="reply")
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12), label="cuts")
    check(kind, text, inside, cuts)


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
@SETTINGS
@given(text=soups, inside=st.booleans(), data=st.data())
def test_marker_soup_parses_the_same_resumed_as_afresh(kind, text, inside, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12), label="cuts")
    check(kind, text, inside, cuts)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(BITS + ['{"a": ', "[1, ", "0.", "1e", "tr", "ue", '"\\u00', "4e"]),
                     max_size=20).map("".join), data=st.data())
def test_a_scanner_read_in_pieces_gives_what_one_scan_gives(text, data):
    scanner = Scanner(0)
    for cut in sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8))) + [len(text)]:
        assert scanner.read(text, cut) == scan(text[:cut])


def test_a_closing_tag_inside_a_string_argument_ends_the_block_there():
    # the block ends at the first </tool_call> even inside a JSON string: the scan already read
    # past it must be cut there, once, and give what a fresh parse of the cut block gives
    text = ('<tool_call>\n{"name": "write_file", "arguments": {"content": "a</tool_call>b"}}\n'
            "</tool_call>\nafter")
    check("hermes", text, False, list(range(len(text))))
    whole = MessageParser(fmt_of("hermes"), tools=TOOLS)
    deltas = openai_deltas(whole.feed(text) + whole.finish())
    assert merged(deltas)[2] == {0: ("write_file", '{"content": "a"}')}
