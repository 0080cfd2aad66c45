"""Grammars that force structured output: JSON objects, JSON schemas, and tool calls written in
each model family's own format (so the next turn's history stays the model's own).

Pure composition over a schema converter (chat.schema_grammar.JsonSchemaConverter), passed in.
Every schema passes chat/schema_check.py first, tools' parameter schemas included, and a grammar
past the converter's size, depth or build-time budget is a 400 naming the limit.
Control tokens cannot be produced under a grammar, so a format that opens with one gets it as a
prefill: text appended to the prompt that the output parser also reads first.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from localgw.chat.formats import ChatFormat
from localgw.chat.gbnf import GrammarTooLarge, repeat
from localgw.chat.schema_check import PARAM, check_schema
from localgw.errors import InvalidRequest

log = logging.getLogger("localgw.chat")


class Converter(Protocol):
    def add_schema(self, schema: dict, name: str) -> str: ...
    def add_rule(self, name: str, body: str) -> str: ...
    def literal(self, text: str) -> str: ...
    def grammar(self, root_body: str) -> str: ...


@dataclass
class Forced:
    grammar: str
    prefill: str = ""


# What a converter raises on a schema it cannot take apart (a recursive $ref that never reaches
# a value, a shape schema_check let through): the request's schema, not the server, is at fault.
_CONVERTER_FAULTS = (KeyError, TypeError, AttributeError, ValueError, OverflowError,
                     AssertionError, IndexError, RecursionError)


@contextmanager
def _budget(param: str):
    """A grammar past the converter's budget is the request's fault: a 400 naming the limit;
    so is a schema the converter cannot take apart."""
    try:
        yield
    except GrammarTooLarge as exc:
        raise InvalidRequest(f"{exc}; simplify the schema", param=param,
                             code="grammar_too_large") from None
    except _CONVERTER_FAULTS as exc:
        log.warning("a schema the grammar converter could not take apart: %s: %s",
                    type(exc).__name__, exc)
        raise InvalidRequest(f"the JSON schema cannot be turned into a grammar "
                             f"({type(exc).__name__}: {exc}); simplify it", param=param,
                             code="unsupported_schema") from None


def json_object_grammar(conv: Converter) -> str:
    return conv.grammar(conv.add_schema({"type": "object"}, "json"))


def json_schema_grammar(conv: Converter, schema: dict) -> str:
    check_schema(schema)
    with _budget(PARAM):
        return conv.grammar(conv.add_schema(schema, "json"))


def _params(tool: dict) -> dict:
    return tool["function"].get("parameters") or {"type": "object", "properties": {}}


def _check_tool_schemas(tools: list[dict]) -> None:
    for i, tool in enumerate(tools):
        try:
            check_schema(_params(tool))
        except InvalidRequest as exc:
            raise InvalidRequest(exc.message.replace("JSON schema", f"tools[{i}] parameters schema"),
                                 param=f"tools[{i}].function.parameters",
                                 code="unsupported_schema") from None


def _xml_string(conv: Converter, i: int, key: str, schema: dict) -> str:
    """A string parameter's value, written raw between XML tags: its enum, const and length
    bounds hold; a pattern or format (written for a JSON string's text) is refused."""
    for keyword in ("pattern", "format"):
        if keyword in schema:
            raise InvalidRequest(f"tools[{i}] parameters schema keyword '{keyword}' at "
                                 f"/properties/{key}/{keyword} cannot be enforced in this model's "
                                 f"XML tool arguments; remove it",
                                 param=f"tools[{i}].function.parameters", code="unsupported_schema")
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if values is not None:
        return conv.add_rule(f"xml-enum-{i}", " | ".join(conv.literal(str(v)) for v in values))
    body = repeat("[^<]", schema.get("minLength", 0), schema.get("maxLength"),
                  lambda rule: conv.add_rule(f"xml-string-{i}-rep", rule))
    return conv.add_rule(f"xml-string-{i}", body)


def _xml_call(conv: Converter, i: int, tool: dict) -> str:
    schema = _params(tool)
    required = set(schema.get("required") or [])
    parts = [conv.literal(f"<tool_call>\n<function={tool['function']['name']}>\n")]
    for key, sub in (schema.get("properties") or {}).items():
        if key not in required:
            continue
        if sub.get("type") == "string":
            value = _xml_string(conv, i, key, sub)
        else:
            value = conv.add_schema(sub, f"args-{i}-{key}")
        parts += [conv.literal(f"<parameter={key}>\n"), value, conv.literal("\n</parameter>\n")]
    parts.append(conv.literal("</function>\n</tool_call>"))
    return conv.add_rule(f"call-{i}", " ".join(parts))


def tool_call_grammar(conv: Converter, fmt: ChatFormat, tools: list[dict], parallel: bool) -> Forced:
    """Force at least one call to one of `tools`, in the template's native format."""
    _check_tool_schemas(tools)
    with _budget("tools"):
        return _tool_call_grammar(conv, fmt, tools, parallel)


def _tool_call_grammar(conv: Converter, fmt: ChatFormat, tools: list[dict], parallel: bool) -> Forced:
    names = [t["function"]["name"] for t in tools]
    args = [conv.add_schema(_params(t), f"args-{i}") for i, t in enumerate(tools)]
    lit = conv.literal

    def json_calls(key: str) -> str:
        calls = [conv.add_rule(f"call-{i}", f'{lit(json.dumps({"name": n})[:-1] + ", ")} '
                                            f'{lit(json.dumps(key) + ": ")} {args[i]} {lit("}")}')
                 for i, n in enumerate(names)]
        return conv.add_rule("call", " | ".join(calls))

    def many(one: str, sep: str) -> str:
        return f"{one} ({lit(sep)} {one})*" if parallel else one

    def single_only(what: str) -> None:
        if len(tools) > 1:
            raise InvalidRequest(f"tool_choice 'required' with several tools cannot be enforced "
                                 f"for {what} templates; name one tool in tool_choice",
                                 param="tool_choice")

    if fmt.tool_format == "hermes":
        if fmt.xml_tool_args:
            call = conv.add_rule("call", " | ".join(_xml_call(conv, i, t) for i, t in enumerate(tools)))
            return Forced(conv.grammar(many(call, "\n")))
        block = conv.add_rule("block", f'{lit("<tool_call>" + chr(10))} {json_calls("arguments")} '
                                       f'{lit(chr(10) + "</tool_call>")}')
        return Forced(conv.grammar(many(block, "\n")))
    if fmt.tool_format == "llama3":
        return Forced(conv.grammar(many(json_calls("parameters"), "; ")))
    if fmt.tool_format == "mistral":
        if fmt.mistral_v11:
            single_only("Mistral [ARGS]")
            return Forced(conv.grammar(args[0]), prefill=f"[TOOL_CALLS]{names[0]}[ARGS]")
        return Forced(conv.grammar(f'{lit("[")} {many(json_calls("arguments"), ", ")} {lit("]")}'),
                      prefill="[TOOL_CALLS]")
    if fmt.tool_format == "deepseek":
        opening = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
        if fmt.fenced_json:  # R1 style: function<｜tool▁sep｜>NAME\n```json\n{…}\n```
            calls = [conv.add_rule(f"call-{i}", f'{lit(n + chr(10) + "```json" + chr(10))} {args[i]} '
                                                f'{lit(chr(10) + "```")}') for i, n in enumerate(names)]
            return Forced(conv.grammar(" | ".join(calls)), prefill=opening + "function<｜tool▁sep｜>")
        single_only("DeepSeek")
        return Forced(conv.grammar(args[0]), prefill=f"{opening}{names[0]}<｜tool▁sep｜>")
    if fmt.tool_format == "harmony":
        single_only("gpt-oss")
        return Forced(conv.grammar(args[0]),
                      prefill=f"<|channel|>commentary to=functions.{names[0]} <|constrain|>json<|message|>")
    # generic fallback
    return Forced(conv.grammar(f'{lit(chr(123) + chr(34) + "tool_calls" + chr(34) + ": [")} '
                               f'{many(json_calls("arguments"), ", ")} {lit("]" + chr(125))}'))
