"""The family registry: every family is detected from its real templates, most specific first."""

import pytest

from localgw.chat.families import REGISTRY, detect, family_of, template_traits
from localgw.chat.families.base import ChatFormat
from localgw.chat.formats import chat_format
from tests.helpers import DATA

TEMPLATES = DATA / "templates"

# family → real templates of it (tests/data/templates/PROVENANCE.md)
FAMILY_TEMPLATES = {
    "gpt-oss": ["openai-gpt-oss-120b.jinja"],
    "deepseek": ["deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
                 "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "deepseek-ai-DeepSeek-V3.1.jinja"],
    "qwen3-coder": ["Qwen3-Coder.jinja", "Qwen3.5-4B.jinja"],
    "mistral": ["mistralai-Mistral-Nemo-Instruct-2407.jinja",
                "Mistral-Small-3.2-24B-Instruct-2506.jinja",
                "mistralai-Ministral-3-14B-Reasoning-2512.jinja"],
    "hermes": ["Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja", "Qwen-QwQ-32B.jinja",
               "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"],
    "llama3": ["meta-llama-Llama-3.1-8B-Instruct.jinja", "meta-llama-Llama-3.2-3B-Instruct.jinja",
               "meta-llama-Llama-3.3-70B-Instruct.jinja"],
    "chatml": ["HuggingFaceTB-SmolLM3-3B.jinja"],
    "generic": ["google-gemma-2-2b-it.jinja", "microsoft-Phi-3.5-mini-instruct.jinja"],
}
CASES = [(family, name) for family, names in FAMILY_TEMPLATES.items() for name in names]


def test_every_registered_family_has_templates_here_and_every_template_a_family():
    assert sorted(FAMILY_TEMPLATES) == sorted(f.name for f in REGISTRY)
    assert sorted(n for _, n in CASES) == sorted(p.name for p in TEMPLATES.glob("*.jinja"))


@pytest.mark.parametrize("family,name", CASES)
def test_each_family_is_detected_from_its_templates(family, name):
    template = (TEMPLATES / name).read_text()
    assert detect(template).name == family
    assert template_traits(template).family == family
    fmt = chat_format(template)
    assert fmt.family == family and family_of(fmt) is detect(template)


@pytest.mark.parametrize("family,name", CASES)
def test_the_first_matching_family_in_the_registry_is_the_most_specific(family, name):
    template = (TEMPLATES / name).read_text()
    matching = [f.name for f in REGISTRY if f.detect(template)]
    assert matching[0] == family and matching[-1] == "generic"


@pytest.mark.parametrize("specific,general,name", [
    ("qwen3-coder", "hermes", "Qwen3-Coder.jinja"),   # <function=…> inside <tool_call>
    ("qwen3-coder", "hermes", "Qwen3.5-4B.jinja"),
    ("hermes", "chatml", "Qwen-Qwen2.5-7B-Instruct.jinja"),  # <tool_call> in a ChatML template
    ("hermes", "chatml", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"),
])
def test_a_template_of_two_families_resolves_to_the_more_specific(specific, general, name):
    template = (TEMPLATES / name).read_text()
    names = [f.name for f in REGISTRY]
    assert {specific, general} <= {f.name for f in REGISTRY if f.detect(template)}
    assert names.index(specific) < names.index(general)
    assert detect(template).name == specific


def test_generic_matches_everything_and_comes_last():
    assert REGISTRY[-1].name == "generic" and REGISTRY[-1].detect("")
    assert all(not f.detect("") for f in REGISTRY[:-1])


def test_a_model_without_a_template_and_records_built_by_hand_find_a_family():
    assert template_traits(None).family == "none" and chat_format(None).family == "none"
    assert family_of(chat_format(None)).name == "generic"
    # an unknown name: the most general family of its tool format
    assert family_of(ChatFormat("qwen", "hermes", None, True)).name == "hermes"
    assert family_of(ChatFormat("x", "generic", None, False)).name == "generic"
