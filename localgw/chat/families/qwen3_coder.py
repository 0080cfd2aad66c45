"""Qwen3-Coder and Qwen3.5: `<tool_call>` blocks whose body is XML,
`<function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>\\n…</function>`.

A Hermes-style family (hermes.py parses both bodies); what is its own is the detection, that its
templates render tools, and the grammar, which writes each required parameter as XML: a string
value raw between the tags, any other value as JSON.
"""

from __future__ import annotations

from localgw.chat.families.base import CallGrammar, ChatFormat, Converter, Forced, params
from localgw.chat.families.hermes import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, Hermes
from localgw.chat.gbnf import repeat
from localgw.errors import InvalidRequest


class Qwen3Coder(Hermes):
    name = "qwen3-coder"
    markers = ("<function=",)
    renders_tools = True
    xml_tool_args = True

    def tool_grammar(self, g: CallGrammar, fmt: ChatFormat) -> Forced:
        call = g.conv.add_rule("call", " | ".join(_xml_call_rule(g.conv, i, t)
                                                  for i, t in enumerate(g.tools)))
        return Forced(g.conv.grammar(g.many(call, "\n")))


def _xml_string_rule(conv: Converter, i: int, key: str, schema: dict) -> str:
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


def _xml_call_rule(conv: Converter, i: int, tool: dict) -> str:
    schema = params(tool)
    required = set(schema.get("required") or [])
    parts = [conv.literal(f"{TOOL_CALL_OPEN}\n<function={tool['function']['name']}>\n")]
    for key, sub in (schema.get("properties") or {}).items():
        if key not in required:
            continue
        if sub.get("type") == "string":
            value = _xml_string_rule(conv, i, key, sub)
        else:
            value = conv.add_schema(sub, f"args-{i}-{key}")
        parts += [conv.literal(f"<parameter={key}>\n"), value, conv.literal("\n</parameter>\n")]
    parts.append(conv.literal(f"</function>\n{TOOL_CALL_CLOSE}"))
    return conv.add_rule(f"call-{i}", " ".join(parts))
