"""Tool-call and reasoning parsers on realistic outputs of each family; streaming split at every
character boundary gives exactly the non-streaming result."""

import json

import pytest

from localgw.chat.formats import chat_format
from localgw.chat.output import MessageParser
from localgw.chat.responses import Usage, collect_chat
from tests.helpers import DATA, openai_deltas

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}]


def run(template: str, text: str, *, tools=TOOLS, pieces=None, inside=False, fields=None):
    fmt = chat_format((DATA / "templates" / template).read_text())
    parser = MessageParser(fmt, tools=tools, inside_reasoning=inside)
    deltas = []
    for piece in pieces or [text]:
        deltas += parser.feed(piece)
    deltas = openai_deltas(deltas + parser.finish(), fields)
    chunks = [{"id": "x", "created": 0, "model": "m",
               "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    message = collect_chat(chunks, Usage())["choices"][0]["message"]
    for call in message.get("tool_calls", []):
        call["id"] = "ID"
    return message, deltas


def calls(message):
    return [(c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in message.get("tool_calls", [])]


HERMES_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>'
ADD_CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2.5}}\n</tool_call>'
CASES = [
    # (template, output, expected content, expected calls)
    ("Qwen-Qwen2.5-7B-Instruct.jinja", HERMES_CALL, None, [("get_weather", {"city": "Paris", "days": 3})]),
    ("Qwen-Qwen2.5-7B-Instruct.jinja", HERMES_CALL + "\n" + ADD_CALL, None,
     [("get_weather", {"city": "Paris", "days": 3}), ("add", {"a": 1, "b": 2.5})]),
    ("Qwen-Qwen2.5-7B-Instruct.jinja", "Let me look that up.\n" + HERMES_CALL, "Let me look that up.",
     [("get_weather", {"city": "Paris", "days": 3})]),
    ("Qwen-Qwen2.5-7B-Instruct.jinja", '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2,}}\n</tool_call>',
     None, [("add", {"a": 1, "b": 2})]),                                 # malformed JSON: healed
    ("Qwen-Qwen2.5-7B-Instruct.jinja", "<tool_call>\nnot json at all\n</tool_call>",
     "<tool_call>\nnot json at all\n</tool_call>", []),                  # not a call: content
    ("Qwen-Qwen2.5-7B-Instruct.jinja", "Paris is sunny today.", "Paris is sunny today.", []),
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", HERMES_CALL, None,
     [("get_weather", {"city": "Paris", "days": 3})]),
    ("Qwen3-Coder.jinja", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
     "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>", None,
     [("get_weather", {"city": "Paris", "days": 3})]),
    ("Qwen3.5-4B.jinja", "Checking.\n<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n"
     "<parameter=b>\n2\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n"
     "<parameter=city>\n12 Rue\n</parameter>\n</function>\n</tool_call>", "Checking.",
     [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "12 Rue"})]),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", '{"name": "get_weather", "parameters": {"city": "Paris"}}',
     None, [("get_weather", {"city": "Paris"})]),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", '<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 2}}',
     None, [("add", {"a": 1, "b": 2})]),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", '{"name": "add", "parameters": {"a": 1, "b": 2}}; '
     '{"name": "get_weather", "parameters": {"city": "Oslo"}}', None,
     [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Oslo"})]),
    ("meta-llama-Llama-3.3-70B-Instruct.jinja", '{"answer": 42}', '{"answer": 42}', []),
    ("meta-llama-Llama-3.3-70B-Instruct.jinja", "It is sunny.", "It is sunny.", []),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja",
     '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcdefghi"}, '
     '{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "bcdefghij"}]', None,
     [("get_weather", {"city": "Paris"}), ("add", {"a": 1, "b": 2})]),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", 'Sure. [TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": 2}}]',
     "Sure.", [("add", {"a": 1, "b": 2})]),
    ("Mistral-Small-3.2-24B-Instruct-2506.jinja", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', None,
     [("get_weather", {"city": "Paris"})]),
    ("Mistral-Small-3.2-24B-Instruct-2506.jinja",
     '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2', None,
     [("get_weather", {"city": "Paris"}), ("add", {"a": 1, "b": 2})]),      # cut short: healed
    ("deepseek-ai-DeepSeek-V3.1.jinja",
     '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜>'
     '<｜tool▁call▁begin｜>add<｜tool▁sep｜>{"a": 1, "b": 2}<｜tool▁call▁end｜><｜tool▁calls▁end｜>', None,
     [("get_weather", {"city": "Paris"}), ("add", {"a": 1, "b": 2})]),
    ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
     'I will call it.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n'
     '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>', "I will call it.",
     [("get_weather", {"city": "Paris"})]),
    ("openai-gpt-oss-120b.jinja",
     '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}', None,
     [("get_weather", {"city": "Paris"})]),
    ("google-gemma-2-2b-it.jinja", '{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}', None,
     [("add", {"a": 1, "b": 2})]),
    ("google-gemma-2-2b-it.jinja", "Hello there.", "Hello there.", []),
]


@pytest.mark.parametrize("template,text,content,expected", CASES,
                         ids=[f"{c[0].split('.jinja')[0][:24]}-{i}" for i, c in enumerate(CASES)])
def test_tool_calls_parse_and_stream_identically(template, text, content, expected):
    whole, _ = run(template, text)
    assert whole["content"] == content
    assert calls(whole) == expected
    for size in (1, 2, 5):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        assert run(template, text, pieces=pieces)[0] == whole
    for cut in range(1, len(text)):
        assert run(template, text, pieces=[text[:cut], text[cut:]])[0] == whole


def test_streamed_call_deltas_have_the_openai_shape():
    text = HERMES_CALL
    _, deltas = run("Qwen-Qwen2.5-7B-Instruct.jinja", text, pieces=list(text))
    call_deltas = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    first = call_deltas[0]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [d["function"]["arguments"] for d in call_deltas[1:]]
    assert len(fragments) > 3  # arguments stream in pieces, not whole
    assert all(set(d) == {"index", "function"} for d in call_deltas[1:])
    assert json.loads("".join(fragments)) == {"city": "Paris", "days": 3}


def test_no_tools_requested_means_no_parsing():
    message, _ = run("Qwen-Qwen2.5-7B-Instruct.jinja", HERMES_CALL, tools=None)
    assert message["content"] == HERMES_CALL and "tool_calls" not in message


REASONING = [
    # (template, output, prompt opened the block, reasoning, content)
    ("Qwen-Qwen3-0.6B.jinja", "<think>\nThe user greets me.\n</think>\n\nHello!", False,
     "The user greets me.", "Hello!"),
    ("Qwen-QwQ-32B.jinja", "Let me think.\nOK.\n</think>\n\nThe answer is 4.", True,
     "Let me think.\nOK.", "The answer is 4."),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "2+2 is 4.\n</think>\n\n**4**", True,
     "2+2 is 4.", "**4**"),
    ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "<think>\nhm\n</think>\nDone.", False, "hm", "Done."),
    ("deepseek-ai-DeepSeek-V3.1.jinja", "quick check</think>Yes.", True, "quick check", "Yes."),
    ("HuggingFaceTB-SmolLM3-3B.jinja", "<think>\nSmall thought.\n</think>\nBig answer.", False,
     "Small thought.", "Big answer."),
    ("Qwen3.5-4B.jinja", "Thinking hard.\n</think>\n\nResult.", True, "Thinking hard.", "Result."),
    ("mistralai-Ministral-3-14B-Reasoning-2512.jinja", "[THINK]Draft: 7*6=42.[/THINK]It is 42.", False,
     "Draft: 7*6=42.", "It is 42."),
    ("openai-gpt-oss-120b.jinja", "<|channel|>analysis<|message|>User wants a joke.<|end|>"
     "<|start|>assistant<|channel|>final<|message|>Why did the chicken...", False,
     "User wants a joke.", "Why did the chicken..."),
    ("Qwen-Qwen3-0.6B.jinja", "No thinking here.", False, None, "No thinking here."),
]


@pytest.mark.parametrize("template,text,inside,reasoning,content", REASONING,
                         ids=[r[0].split(".jinja")[0][:30] for r in REASONING])
def test_reasoning_is_split_cleanly_and_streams_first(template, text, inside, reasoning, content):
    whole, _ = run(template, text, inside=inside, tools=None)
    assert whole.get("reasoning_content") == reasoning
    assert whole.get("reasoning") == reasoning
    assert whole["content"] == content
    for tag in ("<think>", "</think>", "[THINK]", "[/THINK]", "<|channel|>", "<|message|>"):
        assert tag not in (whole["content"] or "")
    message, deltas = run(template, text, inside=inside, tools=None, pieces=list(text))
    assert message == whole
    kinds = ["r" if "reasoning_content" in d else "c" for d in deltas]
    assert kinds == sorted(kinds, key=lambda k: k != "r")  # every reasoning delta before content


def test_reasoning_field_names_are_configurable():
    text = "<think>\nx\n</think>\n\ny"
    only, _ = run("Qwen-Qwen3-0.6B.jinja", text, tools=None, fields=("reasoning",))
    assert only.get("reasoning") == "x" and "reasoning_content" not in only


def test_tool_call_inside_reasoning_is_not_a_call():
    text = "<think>\nMaybe " + HERMES_CALL + "?\n</think>\n\nNo tools needed."
    message, _ = run("Qwen-Qwen3-0.6B.jinja", text)
    assert "tool_calls" not in message
    assert message["content"] == "No tools needed."
    assert HERMES_CALL in message["reasoning_content"]


# ---- every tool-capable template × single / parallel / text before / malformed ------------------

WEATHER_ARGS = '{"city": "Paris", "days": 3}'
ADD_ARGS = '{"a": 1, "b": 2}'
BROKEN_ARGS = '{"a": 1, "b": 2,}'   # a trailing comma, as small models write


def write_calls(fmt, calls):
    """Model output for `calls` [(name, raw_args)] in the family's own format."""
    if fmt.tool_format == "hermes" and fmt.xml_tool_args:
        def xml(name, raw):
            params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in json.loads(raw.replace(",}", "}")).items())
            return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"
        return "\n".join(xml(n, a) for n, a in calls)
    if fmt.tool_format == "hermes":
        return "\n".join(f'<tool_call>\n{{"name": "{n}", "arguments": {a}}}\n</tool_call>' for n, a in calls)
    if fmt.tool_format == "llama3":
        return "; ".join(f'{{"name": "{n}", "parameters": {a}}}' for n, a in calls)
    if fmt.tool_format == "mistral" and fmt.mistral_v11:
        return "".join(f"[TOOL_CALLS]{n}[ARGS]{a}" for n, a in calls)
    if fmt.tool_format == "mistral":
        return "[TOOL_CALLS][" + ", ".join(f'{{"name": "{n}", "arguments": {a}}}' for n, a in calls) + "]"
    if fmt.tool_format == "deepseek" and fmt.fenced_json:
        body = "".join(f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{n}\n```json\n{a}\n```<｜tool▁call▁end｜>"
                       for n, a in calls)
        return f"<｜tool▁calls▁begin｜>{body}<｜tool▁calls▁end｜>"
    if fmt.tool_format == "deepseek":
        body = "".join(f"<｜tool▁call▁begin｜>{n}<｜tool▁sep｜>{a}<｜tool▁call▁end｜>" for n, a in calls)
        return f"<｜tool▁calls▁begin｜>{body}<｜tool▁calls▁end｜>"
    if fmt.tool_format == "harmony":
        return "<|start|>assistant".join(
            f"<|channel|>commentary to=functions.{n} <|constrain|>json<|message|>{a}<|call|>" for n, a in calls)
    raise AssertionError(fmt)


TOOL_TEMPLATES = sorted(p.name for p in (DATA / "templates").glob("*.jinja")
                        if chat_format(p.read_text()).tool_format != "generic")
SCENARIOS = {
    "single": ([("get_weather", WEATHER_ARGS)], ""),
    "parallel": ([("get_weather", WEATHER_ARGS), ("add", ADD_ARGS)], ""),
    "text_before": ([("add", ADD_ARGS)], "Let me call a tool."),
    "malformed": ([("add", BROKEN_ARGS)], ""),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("template", TOOL_TEMPLATES)
def test_every_tool_template_parses_its_own_format(template, scenario):
    fmt = chat_format((DATA / "templates" / template).read_text())
    wanted, before = SCENARIOS[scenario]
    if fmt.tool_format == "harmony" and before:  # a preamble is a commentary message
        prefix = f"<|channel|>commentary<|message|>{before}<|end|><|start|>assistant"
    else:
        prefix = before + ("\n" if fmt.tool_format == "hermes" else " ") if before else ""
    text = prefix + write_calls(fmt, wanted)
    whole, _ = run(template, text)
    if before and fmt.tool_format == "llama3":
        # Llama 3 writes a call as the whole reply: JSON after prose is prose, not a call
        assert calls(whole) == [] and whole["content"] == text
    else:
        assert calls(whole) == [(n, json.loads(a.replace(",}", "}"))) for n, a in wanted]
        assert whole["content"] == (before or None)
    for cut in range(1, len(text)):
        assert run(template, text, pieces=[text[:cut], text[cut:]])[0] == whole
    assert run(template, text, pieces=list(text))[0] == whole


def test_arguments_nested_deeper_than_json_reads_are_not_a_crash():
    deep = "[" * 100_000 + "]" * 100_000
    xml = f"<tool_call>\n<function=add>\n<parameter=a>\n{deep}\n</parameter>\n</function>\n</tool_call>"
    message, _ = run("Qwen3-Coder.jinja", xml)
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"a": deep}  # as written
    message, _ = run("meta-llama-Llama-3.1-8B-Instruct.jinja", f'{{"x": {deep}, "name": "add"}}')
    assert "tool_calls" not in message and message["content"].startswith('{"x": [[[')
