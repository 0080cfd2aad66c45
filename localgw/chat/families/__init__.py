"""Model families: one module per family, and the registry that detection walks.

A family is what a chat template means around a model's turns. Its module holds one `Family`
subclass (base.py declares the interface and its defaults) with everything particular to it:
- detection: markers in the template text, any one of which identifies the family;
- the ChatFormat record it makes of a template: tool format, reasoning tags, whether the
  template renders tools itself, the control tokens the output parsers must see (preserved);
- history: how earlier turns are reshaped for its template (Mistral's call ids, plain-text
  calls and results for templates that know nothing of tools);
- output: the parser of its tool calls in a reply (or of the whole reply, for gpt-oss's channels);
- grammar: how a forced tool call is written in its own format, and the prefill it opens with.
Text helpers that several families share (partial markers held back while streaming, JSON call
objects, `<think>` blocks) are in common.py; grammar helpers in base.py.

REGISTRY lists the families in the order detection walks it; the first whose markers the
template holds wins, so a family whose markers can appear in another's templates comes first:
Qwen3-Coder's `<function=` calls sit inside `<tool_call>` blocks (before Hermes); Qwen's and
Hermes 3's templates are ChatML with `<tool_call>` blocks (Hermes before ChatML); the generic
family matches every template and comes last. tests/unit/test_families.py checks the order
against the real templates in tests/data/templates.

chat_format (formats.py) and template_traits (here; the store keeps its result in a model's
manifest) both start from `detect`; `family_of` goes back from a ChatFormat to its family.

Adding a family: one module with a Family subclass, and one line in REGISTRY.
"""

from __future__ import annotations

from localgw.chat.families.base import ChatFormat, Family, TemplateTraits
from localgw.chat.families.chatml import ChatML
from localgw.chat.families.deepseek import DeepSeek
from localgw.chat.families.generic import Generic
from localgw.chat.families.gpt_oss import GptOss
from localgw.chat.families.hermes import Hermes
from localgw.chat.families.llama3 import Llama3
from localgw.chat.families.mistral import Mistral
from localgw.chat.families.qwen3_coder import Qwen3Coder

REGISTRY: tuple[Family, ...] = (
    GptOss(),
    DeepSeek(),
    Qwen3Coder(),
    Mistral(),
    Hermes(),
    Llama3(),
    ChatML(),
    Generic(),
)

_BY_NAME = {family.name: family for family in REGISTRY}
# A record of a name no family has (a model without a template, a record built by hand) is read
# by the most general family of its tool format: the last one registered.
_BY_TOOL_FORMAT = {family.tool_format: family for family in REGISTRY}

_REASONING_MARKERS = ["<think>", "</think>", "[THINK]", "<|channel|>", "reasoning_content"]


def detect(template: str) -> Family:
    """The first registered family whose markers `template` holds."""
    return next(family for family in REGISTRY if family.detect(template))


def family_of(fmt: ChatFormat) -> Family:
    """The family that reads and forces the output of a template with this record."""
    return _BY_NAME.get(fmt.family) or _BY_TOOL_FORMAT[fmt.tool_format]


def template_traits(template: str | None) -> TemplateTraits:
    """Family, tool and reasoning support of a Jinja chat template."""
    if not template:
        return TemplateTraits("none", False, False)
    family = detect(template)
    return TemplateTraits(family.name, family.supports_tools(template),
                          any(m in template for m in _REASONING_MARKERS))
