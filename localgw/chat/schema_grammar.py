"""JSON schema → llama.cpp GBNF, on llama-cpp-python's own SchemaConverter.

The converter class is llama-cpp-python's, which only the engine imports: `JsonSchemaConverter()`
builds this module's subclass of it on first use (engine.json_schema hands over the base class
and its rule tables), so importing this module, or the server, does not load llama.cpp.

The converter walks the schema; we take over the parts where its output would crash llama.cpp,
grow without bound, or produce values a validator refuses. chat/schema_check.py has already
refused (400, with the keyword's JSON pointer) everything this cannot enforce.

Repetition (maxLength, maxItems, pattern counts). The converter writes a bound of N as N nested
optional groups, `(a (a (a)?)?)?`; llama.cpp's parser recurses once per level, and a bound of
100000 overflows its stack. Here a bound is llama.cpp's own `x{m,n}`, which it expands into a
chain of rules that its parse stack walks with tail calls, so nothing nests (chat/gbnf.py,
`repeat`). One `{m,n}` carries at most 1000 (llama.cpp refuses counts past 2000, and newer
releases drop them silently); bigger bounds are blocks of 1000, up to MAX_REPEAT (1,000,000).
The cost is per bound, not per count: a string of maxLength 1,000,000 is about 4,000 rules, which
llama.cpp builds in milliseconds, and a sampled token costs what it costs in an unbounded string.
Patterns are translated by chat/pattern.py, with the same repetition and its own limits.

Numbers. `minimum`, `maximum` and their exclusive forms become digit-range alternatives
(chat/numbers.py): integers of at most 16 digits (as the converter's unbounded `integer`),
exponent-free decimals of at most 15 digits (what a double holds exactly). A bound beyond those
digits binds nothing and is dropped, so the grammar's size never follows a bound's magnitude.

Formats. `date`, `time` and `date-time` are RFC 3339 as JSON schema 2020-12 reads them: years
0001-9999, the days each month has (29 February only in Gregorian leap years), hours 00-23,
minutes and seconds 00-59, an optional millisecond fraction, and `Z` or an offset up to ±23:59.

Budget. Every grammar is at most gbnf.MAX_GRAMMAR_SIZE units (characters, plus the rules each
`{m,n}` expands into) and gbnf.MAX_GRAMMAR_DEPTH parentheses deep, and takes at most
MAX_BUILD_SECONDS to build; past any of them the build stops with GrammarTooLarge, which
chat/grammars.py turns into a 400 naming the limit.
"""

from __future__ import annotations

import functools
import json
import time
from itertools import count

from localgw.chat import gbnf
from localgw.chat.numbers import int_range, integer_bounds, number_bounds, number_range
from localgw.chat.pattern import pattern_grammar
from localgw.engine.json_schema import schema_converter_base
from localgw.errors import InvalidRequest

MAX_BUILD_SECONDS = 5.0

# llama-cpp-python's `char` lets raw newlines and other control characters into strings, which
# makes invalid JSON; this is the JSON spec's own definition.
JSON_CHAR = (r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
             r'[0-9a-fA-F] [0-9a-fA-F])')

# Gregorian leap years: a multiple of 4 in the last two digits (not 00), or a multiple of 4
# followed by 00; year 0000 is neither.
_MULTIPLE_OF_4 = '"0" [48] | [2468] [048] | [13579] [26]'
_DAYS_28 = '"0" [1-9] | "1" [0-9] | "2" [0-8]'
FORMAT_RULES = {
    "date": 'date-year "-" date-month-day | date-leap-year "-02-29"',
    "date-year": '[1-9] [0-9]{3} | "0" [1-9] [0-9]{2} | "00" [1-9] [0-9] | "000" [1-9]',
    "date-leap-year": f'[0-9] [0-9] ( {_MULTIPLE_OF_4} ) | ( {_MULTIPLE_OF_4} ) "00"',
    "date-month-day": (f'( "0" [13578] | "1" [02] ) "-" ( {_DAYS_28} | "29" | "3" [01] ) | '
                       f'( "0" [469] | "11" ) "-" ( {_DAYS_28} | "29" | "30" ) | '
                       f'"02-" ( {_DAYS_28} )'),
    "time": ('( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
             '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'),
    "date-time": 'date "T" time',
}
_FORMAT_DEPS = {"date": ["date-year", "date-leap-year", "date-month-day"],
                "date-time": ["date", "time"]}
_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
_OBJECT = {"properties", "additionalProperties", "allOf"}
_OBJECT_OR_ARRAY = _OBJECT | {"items", "prefixItems"}
_NOT_PLAIN = {"$ref", "anyOf", "oneOf", "const", "enum"}  # the converter's own branches win
_DISPATCH = _NOT_PLAIN | _OBJECT_OR_ARRAY | {"pattern", "format"}  # what the converter reads
_IMPLIED = (("string", ("minLength", "maxLength")), ("array", ("minItems", "maxItems")),
            ("number", tuple(_BOUNDS)),
            ("object", ("required",)))


def _implied_type(schema: dict) -> str:
    """A type whose values satisfy an untyped schema: the first its keywords apply to (a value
    of another type ignores them), else an object, which is what the converter writes for {}."""
    return next((kind for kind, keys in _IMPLIED if any(k in schema for k in keys)), "object")


def JsonSchemaConverter():  # noqa: N802 - used as the converter's class
    """A fresh converter for one grammar (the factory `chat.grammars` takes)."""
    return _converter_class()()


@functools.cache
def _converter_class() -> type:
    base, primitives, reserved = schema_converter_base()
    return type("JsonSchemaConverter", (_Rules, base),
                {"_primitives": primitives, "_reserved": reserved})


class _Rules:
    """What the converter does differently, mixed in before llama-cpp-python's SchemaConverter
    (`_primitives` and `_reserved` are its PRIMITIVE_RULES and RESERVED_NAMES)."""

    _primitives: dict
    _reserved: set

    def __init__(self):
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self._units = 0
        self._deadline = time.monotonic() + MAX_BUILD_SECONDS

    def _add_rule(self, name, rule):
        before = len(self._rules)
        key = super()._add_rule(name, rule)
        if len(self._rules) > before:
            self._units += gbnf.grammar_size(rule)[0]
            gbnf.check_units(self._units)
        return key

    def visit(self, schema, name):
        if time.monotonic() > self._deadline:
            raise gbnf.GrammarTooLarge(f"building the grammar took longer than the limit of "
                                       f"{MAX_BUILD_SECONDS:g} s")
        if schema is True:  # any value; the converter reads an empty schema as an object
            schema = {}
        if not isinstance(schema, dict) or _NOT_PLAIN & set(schema):
            return super().visit(schema, name)
        kind = schema.get("type")
        if isinstance(kind, list) and len(kind) == 1:  # the converter drops the rest of the schema
            kind = kind[0]
        if kind is None and schema and not _DISPATCH & set(schema):
            kind = _implied_type(schema)  # the converter has no branch for these
        if kind != schema.get("type"):
            schema = {**schema, "type": kind}
        rule_name = name + "-" if name in self._reserved else name or "root"
        body = self._own_rule(schema, kind, rule_name)
        return self._add_rule(rule_name, body) if body else super().visit(schema, name)

    def _own_rule(self, schema: dict, kind, rule_name: str) -> str | None:
        """The body of the rule for `schema` where ours replaces the converter's, else None."""
        if kind in ("integer", "number") and _BOUNDS & set(schema):
            return self._number(schema, kind) + " space"
        stringish = kind == "string" or (kind is None and not _OBJECT_OR_ARRAY & set(schema))
        if stringish and "pattern" in schema:
            names = count()
            body = pattern_grammar(schema["pattern"],
                                   lambda b: self._add_rule(f"{rule_name}-{next(names)}", b))
            return rf'"\"" {body} "\"" space'
        if stringish and schema.get("format") in FORMAT_RULES:
            return rf'"\"" {self._format(schema["format"])} "\"" space'
        if kind == "string" and ("minLength" in schema or "maxLength" in schema):
            char = self._add_primitive("char", self._primitives["char"])
            chars = gbnf.repeat(char, schema.get("minLength", 0), schema.get("maxLength"),
                                self._helper(rule_name))
            return rf'"\"" {chars} "\"" space'
        arrayish = kind == "array" or (kind is None and not _OBJECT & set(schema))
        if arrayish and schema.get("items") is False and "prefixItems" not in schema:
            if schema.get("minItems", 0) > 0:  # no item may be there, yet some must
                raise InvalidRequest("JSON schema: 'items: false' with minItems above 0 allows "
                                     "no array", param="response_format.json_schema.schema")
            return '"[" space "]" space'
        if arrayish and ("minItems" in schema or "maxItems" in schema) and (
                isinstance(schema.get("items"), dict)
                or kind == "array" and "items" not in schema and "prefixItems" not in schema):
            return self._array(schema, rule_name)
        return None

    def _helper(self, rule_name: str) -> gbnf.Rule:
        names = count()
        return lambda body: self._add_rule(f"{rule_name}-rep{next(names)}", body)

    def _number(self, schema: dict, kind: str) -> str:
        try:
            if kind == "number":
                return number_range(*number_bounds(schema))
            return int_range(*integer_bounds(schema))
        except ValueError as exc:  # schema_check refuses these first, with the keyword's pointer
            raise InvalidRequest(f"JSON schema number bounds: {exc}",
                                 param="response_format.json_schema.schema") from None

    def _format(self, fmt: str) -> str:
        for dep in _FORMAT_DEPS.get(fmt, []):
            self._format(dep)
        return self._add_rule(fmt, FORMAT_RULES[fmt])

    def _array(self, schema: dict, rule_name: str) -> str:
        if "items" in schema:
            item = self.visit(schema["items"], f"{rule_name}-item")
        else:  # any JSON value (the converter reads an empty schema as an object)
            item = self._add_primitive("value", self._primitives["value"])
        items = gbnf.repeat_separated(item, '"," space', schema.get("minItems", 0),
                                      schema.get("maxItems"), self._helper(rule_name))
        return f'"[" space {items} "]" space'

    def resolve_refs(self, schema: dict, url: str) -> dict:
        """Make every local `$ref` absolute (`url#/…`) and register its target, at any depth.
        llama-cpp-python's own stops at a node that has a `$ref`, so the refs inside `$defs`
        beside a root `$ref` (pydantic's shape for a recursive model) were never registered."""
        def visit(node) -> None:
            if isinstance(node, list):
                for item in node:
                    visit(item)
            elif isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith("#/"):
                    node["$ref"] = full = url + ref
                    if full not in self._refs:
                        target = schema
                        for part in ref[2:].split("/"):
                            target = target[part.replace("~1", "/").replace("~0", "~")]
                        self._refs[full] = target
                for value in node.values():
                    visit(value)

        visit(schema)
        return schema

    def add_schema(self, schema: dict, name: str) -> str:
        """Resolve refs and add the rules for `schema`; returns its rule name."""
        schema = self.resolve_refs(json.loads(json.dumps(schema)), f"schema-{name}")
        return self.visit(schema, name)

    def add_rule(self, name: str, body: str) -> str:
        return self._add_rule(name, body)

    def literal(self, text: str) -> str:
        return self._format_literal(text)

    def _format_literal(self, literal: str) -> str:
        # The converter's own literals escape neither '\\' nor control characters: a const
        # "a\\b" would be written as the invalid JSON "a\b", an enum value with '"' not compile.
        return gbnf.literal(literal)

    def grammar(self, root_body: str) -> str:
        """The finished grammar; raises gbnf.GrammarTooLarge past the size or depth limit."""
        self._rules["root"] = root_body
        if "char" in self._rules:  # JSON strings may not hold raw control characters
            self._rules["char"] = JSON_CHAR
        text = self.format_grammar()
        gbnf.check_size(text)
        return text
