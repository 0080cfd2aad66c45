"""Every template with tools renders a tool conversation exactly as that template defines it."""

import pytest

from localgw.chat.formats import chat_format
from localgw.chat.pipeline import render_conversation
from localgw.chat.requests import ChatRequest
from tests.helpers import DATA

TEMPLATES = DATA / "templates"

CONVERSATION = {"model": "m", "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc123456", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_abc123456", "content": "sunny"}],
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]}

# template → snippets its own format puts in the prompt: the tool definition, the call, the result
EXPECTED = {
    "Qwen-Qwen2.5-7B-Instruct.jinja": [
        '<tools>\n{"type": "function", "function": {"name": "get_weather"',
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n"],
    "Qwen-Qwen3-0.6B.jinja": [
        '<tools>\n{"type": "function", "function": {"name": "get_weather"',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n"],
    "Qwen-QwQ-32B.jinja": [
        '"name": "get_weather"',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n"],
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": [
        '"name": "get_weather"',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<|im_start|>tool\n<tool_response>\nsunny\n</tool_response><|im_end|>"],
    "Qwen3-Coder.jinja": [
        "<name>get_weather</name>",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call><|im_end|>",
        "<tool_response>\nsunny\n</tool_response>"],
    "Qwen3.5-4B.jinja": [
        "get_weather",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call><|im_end|>",
        "<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n"],
    "meta-llama-Llama-3.1-8B-Instruct.jinja": [
        '"name": "get_weather"',
        '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        '<|start_header_id|>ipython<|end_header_id|>\n\n"sunny"<|eot_id|>'],
    "meta-llama-Llama-3.2-3B-Instruct.jinja": [
        '"name": "get_weather"',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        '<|start_header_id|>ipython<|end_header_id|>\n\n"sunny"<|eot_id|>'],
    "meta-llama-Llama-3.3-70B-Instruct.jinja": [
        '"name": "get_weather"',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        '<|start_header_id|>ipython<|end_header_id|>\n\n"sunny"<|eot_id|>'],
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": [
        '[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather"',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "b78696194"}]</s>',
        '[TOOL_RESULTS]{"content": sunny, "call_id": "b78696194"}[/TOOL_RESULTS]'],
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": [
        '[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather"',
        '[TOOL_CALLS]get_weather[CALL_ID]b78696194[ARGS]{"city": "Paris"}</s>',
        "[TOOL_RESULTS]b78696194[TOOL_CONTENT]sunny[/TOOL_RESULTS]"],
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": [
        '"name": "get_weather"',
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}</s>',
        "[TOOL_RESULTS]sunny[/TOOL_RESULTS]"],
    "openai-gpt-oss-120b.jinja": [
        "type get_weather = (_: {",
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>',
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"sunny"<|end|><|start|>assistant'],
    # DeepSeek templates render calls and results but not tool definitions: localgw describes
    # the tools in the system message, with the call syntax of the model's own tokens.
    "deepseek-ai-DeepSeek-V3.1.jinja": [
        "<｜tool▁call▁begin｜>TOOL_NAME<｜tool▁sep｜>ARGUMENTS",
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "<｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜>"],
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": [
        "function<｜tool▁sep｜>TOOL_NAME\n```json\nARGUMENTS\n```",
        '<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜>',
        "<｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜>"],
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": [
        "function<｜tool▁sep｜>TOOL_NAME",
        '<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜>',
        "<｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜>"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tool_conversation_renders_in_the_templates_own_format(name):
    template = (TEMPLATES / name).read_text()
    req = ChatRequest.model_validate(CONVERSATION)
    fmt = chat_format(template)
    prompt = render_conversation(req, template, fmt, [t.model_dump(exclude_none=True) for t in req.tools],
                                 "<s>", "</s>")
    definition, call, result = EXPECTED[name]
    assert definition in prompt
    assert call in prompt
    assert result in prompt
    assert prompt.index(call) < prompt.index(result)


def test_templates_without_tools_get_the_generic_fallback():
    template = (TEMPLATES / "google-gemma-2-2b-it.jinja").read_text()
    req = ChatRequest.model_validate(CONVERSATION)
    fmt = chat_format(template)
    assert fmt.tool_format == "generic"
    prompt = render_conversation(req, template, fmt, [t.model_dump(exclude_none=True) for t in req.tools],
                                 "<bos>", "<eos>")
    assert '{"tool_calls": [{"name": TOOL_NAME' in prompt  # the instructions
    assert '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}' in prompt
    assert "Tool result (call_abc123456): sunny" in prompt


MID_SYSTEM = {"model": "m", "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hi"},
    {"role": "system", "content": "Answer in French."},
    {"role": "user", "content": "again"}]}


def _render(name: str, body: dict) -> str:
    template = (TEMPLATES / name).read_text()
    req = ChatRequest.model_validate(body)
    return render_conversation(req, template, chat_format(template), None, "<s>", "</s>")


def test_a_system_turn_later_in_the_conversation_stays_where_it_is_where_the_template_allows():
    prompt = _render("Qwen-Qwen2.5-7B-Instruct.jinja", MID_SYSTEM)
    assert prompt.index("You are terse.") < prompt.index("hi") < prompt.index("Answer in French.")


@pytest.mark.parametrize("name", ["Qwen3.5-4B.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja"])
def test_templates_that_allow_one_leading_system_turn_get_them_joined_there(name):
    """Qwen3.5 refuses a system message after the first; Mistral's insists on alternation."""
    prompt = _render(name, MID_SYSTEM)
    assert prompt.index("You are terse.") < prompt.index("Answer in French.") < prompt.index("hi")
    assert prompt.count("You are terse.") == 1 and prompt.count("Answer in French.") == 1


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.jinja")))
def test_every_template_renders_a_system_turn_inside_the_conversation(name):
    """What Claude Code sends: whatever the template allows, the text reaches the model once."""
    prompt = _render(name, MID_SYSTEM)
    assert prompt.count("You are terse.") == 1 and prompt.count("Answer in French.") == 1
    assert prompt.index("hi") < prompt.index("again")
