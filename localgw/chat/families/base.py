"""What a family is (the Family interface and its defaults), what it makes of a template
(TemplateTraits, ChatFormat), and what its tool-call grammar is built from (CallGrammar).

A Family is stateless: one instance per family, in the registry (see the package docstring).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from localgw.chat.families.common import Parsed
from localgw.chat.memo import ParseMemo
from localgw.errors import InvalidRequest


@dataclass(frozen=True)
class TemplateTraits:
    family: str
    supports_tools: bool
    supports_reasoning: bool


@dataclass(frozen=True)
class ChatFormat:
    """What a chat template means for parsing and forcing output: one record per template."""
    family: str
    tool_format: str                        # whose parser: hermes, llama3, mistral, deepseek, …
    reasoning: tuple[str, str] | str | None  # (open, close), "harmony", or None
    native_tools: bool
    preserved: tuple[str, ...] = field(default=())  # control tokens the parsers must see
    xml_tool_args: bool = False             # <function=…><parameter=…> bodies
    mistral_v11: bool = False               # name[ARGS]{…} rather than a JSON list
    fenced_json: bool = False               # DeepSeek-R1: function<sep>name ```json {…} ```
    call_syntax: str | None = None          # how to call, when we describe the tools ourselves


class Converter(Protocol):
    def add_schema(self, schema: dict, name: str) -> str: ...
    def add_rule(self, name: str, body: str) -> str: ...
    def literal(self, text: str) -> str: ...
    def grammar(self, root_body: str) -> str: ...


@dataclass
class Forced:
    grammar: str
    prefill: str = ""


def params(tool: dict) -> dict:
    """A tool's parameter schema; a tool without one takes an empty object."""
    return tool["function"].get("parameters") or {"type": "object", "properties": {}}


class CallGrammar:
    """What every family's tool-call grammar is built from: the converter, the tools' names, a
    rule for each tool's arguments (added first, in the tools' order), and whether calls repeat."""

    def __init__(self, conv: Converter, tools: list[dict], parallel: bool):
        self.conv, self.tools, self.parallel = conv, tools, parallel
        self.names = [t["function"]["name"] for t in tools]
        self.args = [conv.add_schema(params(t), f"args-{i}") for i, t in enumerate(tools)]
        self.lit = conv.literal

    def json_calls(self, key: str) -> str:
        """One `{"name": NAME, KEY: ARGUMENTS}` object of any of the tools."""
        lit, conv, args = self.lit, self.conv, self.args
        calls = [conv.add_rule(f"call-{i}", f'{lit(json.dumps({"name": n})[:-1] + ", ")} '
                                            f'{lit(json.dumps(key) + ": ")} {args[i]} {lit("}")}')
                 for i, n in enumerate(self.names)]
        return conv.add_rule("call", " | ".join(calls))

    def many(self, one: str, sep: str) -> str:
        """`one`, repeated with `sep` between when parallel calls are allowed."""
        return f"{one} ({self.lit(sep)} {one})*" if self.parallel else one

    def single_only(self, what: str) -> None:
        """Formats whose prefill names the tool can force only one of them."""
        if len(self.tools) > 1:
            raise InvalidRequest(f"tool_choice 'required' with several tools cannot be enforced "
                                 f"for {what} templates; name one tool in tool_choice",
                                 param="tool_choice")


class Family:
    """One model family. Subclasses set the class attributes and define chat_format,
    parse_calls and tool_grammar; the other methods have defaults that most families keep."""

    name: str                       # as in TemplateTraits.family and ChatFormat.family
    tool_format: str                # as in ChatFormat.tool_format
    markers: tuple[str, ...] = ()   # template text that identifies the family; any one suffices
    # Its templates render `tools` even where they never write "tool_call".
    renders_tools: bool = False
    # Every reply is in channels that parse_channels splits (reasoning, content and calls alike).
    channels: bool = False

    def detect(self, template: str) -> bool:
        return any(marker in template for marker in self.markers)

    def supports_tools(self, template: str) -> bool:
        return "tools" in template and ("tool_call" in template or self.renders_tools)

    def chat_format(self, template: str, traits: TemplateTraits) -> ChatFormat:
        """The record of a template of this family, given its traits."""
        raise NotImplementedError

    def history(self, messages: list[dict]) -> list[dict]:
        """The conversation as this family's templates want it (template_messages' dicts)."""
        return messages

    def parse_calls(self, text: str, final: bool, tools: dict,
                    memo: ParseMemo | None = None) -> Parsed:
        """Content and calls of a reply (past its reasoning); see common.py for the contract."""
        raise NotImplementedError

    def parse_channels(self, text: str, final: bool, memo: ParseMemo) -> tuple:
        """(reasoning, content, calls) of a whole reply, for families with `channels`."""
        raise NotImplementedError

    def tool_grammar(self, g: CallGrammar, fmt: ChatFormat) -> Forced:
        """A grammar forcing at least one call of g's tools in this family's format."""
        raise NotImplementedError
