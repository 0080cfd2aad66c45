import pytest

from localgw.chat.families import template_traits
from localgw.chat.prompt import template_messages
from localgw.chat.requests import ChatRequest
from localgw.chat.template import TemplateError, render_chat
from localgw.gguf import read_gguf
from tests.helpers import DATA, smollm2_path

TEMPLATES = DATA / "templates"


def test_smollm2_template_renders_chatml():
    template = read_gguf(smollm2_path()).chat_template
    prompt = render_chat(template, [{"role": "user", "content": "Hi"}])
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                      "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_qwen25_renders_tools_and_tool_history():
    template = (TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    req = ChatRequest.model_validate({
        "model": "m", "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}]})
    prompt = render_chat(template, template_messages(req.messages),
                         tools=[t.model_dump(exclude_none=True) for t in req.tools])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert "<tool_response>\nsunny\n</tool_response>" in prompt
    assert '"name": "get_weather"' in prompt.split("<|im_start|>user")[0]
    assert prompt.endswith("<|im_start|>assistant\n")


def test_content_parts_and_developer_role_are_normalised():
    req = ChatRequest.model_validate({"model": "m", "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]})
    msgs = template_messages(req.messages)
    assert msgs == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"}]


def test_template_raise_exception_is_a_400():
    template = (TEMPLATES / "google-gemma-2-2b-it.jinja").read_text()
    with pytest.raises(TemplateError) as err:
        render_chat(template, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert err.value.status == 400


def test_sandbox_blocks_attribute_escapes():
    with pytest.raises(Exception):
        render_chat("{{ messages.__class__.__mro__[1].__subclasses__() }}", [])


def test_chat_template_kwargs_reach_the_template():
    template = (TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text()
    off = render_chat(template, [{"role": "user", "content": "x"}], extra={"enable_thinking": False})
    on = render_chat(template, [{"role": "user", "content": "x"}])
    assert off.endswith("<think>\n\n</think>\n\n") and not on.endswith("</think>\n\n")


@pytest.mark.parametrize("name,family,tools,reasoning", [
    ("Qwen-Qwen2.5-7B-Instruct.jinja", "hermes", True, False),
    ("Qwen-Qwen3-0.6B.jinja", "hermes", True, True),
    ("Qwen3-Coder.jinja", "qwen3-coder", True, False),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3", True, False),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral", True, False),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "deepseek", False, True),
    ("google-gemma-2-2b-it.jinja", "generic", False, False),
])
def test_template_traits(name, family, tools, reasoning):
    traits = template_traits((TEMPLATES / name).read_text())
    assert (traits.family, traits.supports_tools, traits.supports_reasoning) == (family, tools, reasoning)
