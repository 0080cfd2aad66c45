"""Repetition bounds (maxLength, maxItems, pattern counts) compile flat and hold exactly in
llama.cpp's own grammar engine; bounds past the limits, and grammars past the size, depth or
build-time budget, are 400s naming the keyword, its pointer and the limit.

The engine is llama.cpp's grammar sampler on SmolLM2's vocabulary (tests/grammar_engine.py): a
text is accepted when every token of it is allowed in turn and then the end of generation is.
"""

from __future__ import annotations

import json
import random
import re
import time

import pytest

from localgw.chat import gbnf
from localgw.chat.formats import ChatFormat
from localgw.chat.grammars import json_schema_grammar, tool_call_grammar
from localgw.chat import schema_grammar
from localgw.chat.schema_grammar import JsonSchemaConverter
from localgw.errors import InvalidRequest

from tests.grammar_engine import gbnf_regex

HERMES = ChatFormat("qwen", "hermes", None, True)
TEXT = 'ab"c\\d\ne é\tfg'  # quotes, backslashes, escapes and a two-byte character


def grammar(schema: dict) -> str:
    return json_schema_grammar(JsonSchemaConverter(), schema)


def text_of(n: int) -> str:
    return (TEXT * (n // len(TEXT) + 1))[:n]


def probes(lo: int, hi: int | None) -> list[int]:
    """Lengths either side of each bound and of every multiple of a thousand up to them."""
    top = hi if hi is not None else lo + 2500
    xs = {lo - 1, lo, lo + 1, top - 1, top, top + 1}
    xs |= {k * 1000 + d for k in range(1, top // 1000 + 2) for d in (-1, 0, 1)}
    return sorted(x for x in xs if 0 <= x <= top + 1)


def within(n: int, lo: int, hi: int | None) -> bool:
    return lo <= n and (hi is None or n <= hi)


LENGTHS = [(0, 0), (0, 1), (2, 2), (0, 999), (1, 1000), (0, 1001), (999, 2001), (1500, 4321),
           (0, 3000), (2000, 2000), (0, None), (1000, None), (2345, None)]


@pytest.mark.parametrize("lo,hi", LENGTHS)
def test_string_lengths_hold_exactly_in_llama_cpp(engine, lo, hi):
    g = grammar({"type": "string", "minLength": lo, **({} if hi is None else {"maxLength": hi})})
    for n in probes(lo, hi):
        value = json.dumps(text_of(n), ensure_ascii=False)
        assert engine.accepts(g, value, per_char=False) == within(n, lo, hi), n


def test_character_by_character_the_same(engine):
    g = grammar({"type": "string", "minLength": 3, "maxLength": 1003})
    for n in (2, 3, 1003, 1004):
        assert engine.accepts(g, json.dumps(text_of(n), ensure_ascii=False)) == (3 <= n <= 1003)


@pytest.mark.parametrize("lo,hi", [(0, 100_000), (99_000, 100_000)])
def test_a_hundred_thousand_holds_in_llama_cpp(engine, lo, hi):
    g = grammar({"type": "string", "minLength": lo, "maxLength": hi})
    for n in (lo - 1, lo, hi, hi + 1):
        if n >= 0:
            assert engine.accepts(g, json.dumps("x" * n), per_char=False) == within(n, lo, hi), n


@pytest.mark.parametrize("lo,hi", [(0, 1_000_000), (123_456, 987_654), (1_000_000, None),
                                   (999_999, 1_000_000)])
def test_up_to_the_limit_every_length_in_range_and_none_outside(lo, hi):
    schema = {"type": "string", "minLength": lo, **({} if hi is None else {"maxLength": hi})}
    rx = gbnf_regex(grammar(schema), "json")
    rng = random.Random(lo)
    top = hi or lo + 5000
    for n in probes(lo, hi)[:8] + probes(lo, hi)[-8:] + [rng.randrange(lo, top) for _ in range(4)]:
        assert bool(rx.fullmatch(f'"{"x" * n}" ')) == within(n, lo, hi), n


ITEMS = [(0, 0), (0, 1), (1, 1), (2, 5), (0, 1000), (3, 1001), (1000, 2500), (0, None),
         (1500, None)]


@pytest.mark.parametrize("lo,hi", ITEMS)
def test_array_lengths_hold_exactly_in_llama_cpp(engine, lo, hi):
    g = grammar({"type": "array", "items": {"type": "integer"}, "minItems": lo,
                 **({} if hi is None else {"maxItems": hi})})
    for n in probes(lo, hi):
        value = "[" + ",".join(["7"] * n) + "]"
        assert engine.accepts(g, value, per_char=False) == within(n, lo, hi), n


def test_array_without_items_is_bounded_too(engine):
    g = grammar({"type": "array", "maxItems": 2})
    assert engine.accepts(g, '[1, "a"]') and not engine.accepts(g, "[1,2,3]")


@pytest.mark.parametrize("pattern,unit,lo,hi", [
    ("^a{1,100000}$", "a", 1, 100_000), ("^(ab){2,1500}$", "ab", 2, 1500),
    ("^[0-9]{1000,1001}$", "5", 1000, 1001), ("^x{2500,}$", "x", 2500, None)])
def test_pattern_counts_hold_exactly_in_llama_cpp(engine, pattern, unit, lo, hi):
    g = grammar({"type": "string", "pattern": pattern})
    for n in sorted({lo - 1, lo, lo + 1, 999, 1000, 1001, 2001} | ({hi - 1, hi, hi + 1} if hi else set())):
        if n >= 0:
            assert engine.accepts(g, json.dumps(unit * n), per_char=False) == within(n, lo, hi), n


HOSTILE = [
    {"type": "string", "maxLength": 100_000},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 100_000},
    {"type": "string", "pattern": "^a{1,100000}$"},
    {"type": "number", "maximum": 1e100}, {"type": "number", "maximum": 1e308},
    {"type": "integer", "maximum": 1e100}, {"type": "integer", "maximum": 1e308},
    {"type": "number", "minimum": -1e308, "exclusiveMaximum": 1e308},
    {"type": "integer", "exclusiveMinimum": -1e308, "exclusiveMaximum": 1e100},
    {"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 1_000_000}
                                      for i in range(100)}},
]


@pytest.mark.parametrize("schema", HOSTILE)
def test_hostile_bounds_build_small_and_fast(engine, schema):
    start = time.perf_counter()
    g = grammar(schema)
    built = time.perf_counter() - start
    size, depth = gbnf.grammar_size(g)
    assert size <= gbnf.MAX_GRAMMAR_SIZE and depth <= gbnf.MAX_GRAMMAR_DEPTH
    assert built < 2 and engine.timed_init(g) < 2  # loose: a shared, busy machine


@pytest.mark.parametrize("schema,keyword,pointer,limit", [
    ({"type": "string", "maxLength": 1_000_001}, "maxLength", "/maxLength", "1000000"),
    ({"type": "object", "properties": {"s": {"type": "string", "minLength": 10 ** 7}}},
     "minLength", "/properties/s/minLength", "1000000"),
    ({"type": "array", "items": {"type": "string"}, "maxItems": 2_000_000}, "maxItems",
     "/maxItems", "1000000"),
    ({"type": "string", "pattern": "^a{1,1000001}$"}, "pattern", "/pattern", "1000000"),
    ({"type": "string", "pattern": "^" + "(" * 33 + "a" + ")" * 33 + "$"}, "pattern", "/pattern", "32"),
    ({"type": "string", "pattern": "(" * 4000 + "a" + ")" * 4000}, "pattern", "/pattern", "32"),
    ({"type": "string", "pattern": "^([a-z]+){1,33}$"}, "pattern", "/pattern", "32"),
    ({"type": "string", "pattern": "^((a|bc){1,8}x){1,8}$"}, "pattern", "/pattern", "32"),
    ({"type": "string", "pattern": "a" * 10_001}, "pattern", "/pattern", "10000"),
    ({"type": "number", "minimum": 1e15}, "minimum", "/minimum", "15 digits"),
    ({"type": "number", "exclusiveMinimum": 1e308}, "exclusiveMinimum", "/exclusiveMinimum", "15 digits"),
    ({"type": "number", "maximum": -1e100}, "maximum", "/maximum", "15 digits"),
    ({"type": "integer", "minimum": 1e16}, "minimum", "/minimum", "16 digits"),
    ({"type": "integer", "exclusiveMaximum": -1e308}, "exclusiveMaximum", "/exclusiveMaximum", "16 digits"),
    ({"type": "string", "format": "date", "maxLength": 5}, "format", "/format", "maxLength"),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
     "prefixItems", "/prefixItems", "items"),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "minItems": 2}, "prefixItems",
     "/prefixItems", "minItems"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required", "/required", "'b'"),
])
def test_bounds_past_the_limits_are_400s_naming_keyword_pointer_and_limit(schema, keyword, pointer, limit):
    with pytest.raises(InvalidRequest) as err:
        grammar(schema)
    message = err.value.message
    assert f"'{keyword}'" in message and f"at {pointer} " in message and limit in message, message
    assert err.value.status == 400 and err.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize("schema", [{"type": "string", "minLength": 5, "maxLength": 4},
                                    {"type": "array", "minItems": 3, "maxItems": 2}])
def test_empty_count_ranges_are_400s(schema):
    with pytest.raises(InvalidRequest) as err:
        grammar(schema)
    assert "is above" in err.value.message and err.value.status == 400


def big_schema(n: int) -> dict:
    return {"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 1_000_000}
                                             for i in range(n)}}


def test_a_grammar_past_the_size_budget_is_a_400_naming_the_limit():
    with pytest.raises(InvalidRequest) as err:
        grammar(big_schema(400))
    assert str(gbnf.MAX_GRAMMAR_SIZE) in err.value.message
    assert err.value.code == "grammar_too_large"
    assert err.value.param == "response_format.json_schema.schema"


def test_tools_past_the_budget_are_a_400_on_tools():
    tool = {"type": "function", "function": {"name": "f", "parameters": big_schema(400)}}
    with pytest.raises(InvalidRequest) as err:
        tool_call_grammar(JsonSchemaConverter(), HERMES, [tool], False)
    assert err.value.param == "tools" and str(gbnf.MAX_GRAMMAR_SIZE) in err.value.message


def test_tool_parameter_bounds_get_the_same_limits():
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "maxLength": 10 ** 9}}}}}
    with pytest.raises(InvalidRequest) as err:
        tool_call_grammar(JsonSchemaConverter(), HERMES, [tool], False)
    assert err.value.param == "tools[0].function.parameters"
    assert "/properties/s/maxLength" in err.value.message


def test_a_build_past_the_time_budget_is_a_400(monkeypatch):
    monkeypatch.setattr(schema_grammar, "MAX_BUILD_SECONDS", -1.0)
    with pytest.raises(InvalidRequest) as err:
        grammar({"type": "object", "properties": {"a": {"type": "string"}}})
    assert "longer than the limit" in err.value.message and err.value.code == "grammar_too_large"


def test_depth_and_size_are_measured_outside_literals_and_classes():
    assert gbnf.grammar_size('root ::= "((((" [(] ( "a" )')[1] == 1
    assert gbnf.grammar_size('root ::= x{0,999} "{5}"\nx ::= "a"')[0] == len(
        'root ::= x{0,999} "{5}"\nx ::= "a"') + 999
    with pytest.raises(gbnf.GrammarTooLarge, match="100"):
        gbnf.check_size("root ::= " + "(" * 101 + '"a"' + ")" * 101)


@pytest.mark.parametrize("lo,hi", [(0, 5), (3, 1000), (0, 1001), (1999, 2001), (5, 250_000),
                                   (1_000_000, 1_000_000), (7, None), (4000, None)])
def test_repeat_never_nests_and_never_counts_past_a_chunk(lo, hi):
    rules = []
    expr = gbnf.repeat("x", lo, hi, lambda body: rules.append(body) or f"r{len(rules)}")
    for text in [expr] + rules:
        assert "(" not in text
        counts = [int(n) for m in re.findall(r"\{(\d+)(?:,(\d*))?\}", text) for n in m if n]
        assert all(c <= gbnf.CHUNK for c in counts), text


XML = ChatFormat("qwen3-coder", "hermes", None, True, xml_tool_args=True)


def xml_call(value: str) -> str:
    return (f"<tool_call>\n<function=f>\n<parameter=s>\n{value}\n</parameter>\n"
            "</function>\n</tool_call>")


def test_xml_tool_strings_keep_their_bounds_and_enums(engine):
    def grammar_for(string: dict) -> str:
        tool = {"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"s": string}, "required": ["s"]}}}
        return tool_call_grammar(JsonSchemaConverter(), XML, [tool], False).grammar

    bounded = grammar_for({"type": "string", "minLength": 2, "maxLength": 1500})
    assert [engine.accepts(bounded, xml_call("x" * n), per_char=False) for n in (1, 2, 1500, 1501)] \
        == [False, True, True, False]
    chosen = grammar_for({"type": "string", "enum": ["red", "green"]})
    assert engine.accepts(chosen, xml_call("green")) and not engine.accepts(chosen, xml_call("blue"))
    with pytest.raises(InvalidRequest) as err:
        grammar_for({"type": "string", "pattern": "^a+$"})
    assert "'pattern'" in err.value.message and err.value.param == "tools[0].function.parameters"


@pytest.mark.parametrize("schema", [
    {"type": {}}, {"type": "string", "format": {}}, {"type": "object", "properties": []},
    {"anyOf": {}}, {"type": ["string", {}]}, {"additionalProperties": []},
    {"type": "array", "prefixItems": {}},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"type": "array", "items": False, "minItems": 1},
])
def test_a_schema_of_the_wrong_shape_is_a_400_not_a_500(schema):
    from localgw.chat.grammars import json_schema_grammar
    from localgw.chat.schema_grammar import JsonSchemaConverter
    from localgw.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as err:
        grammar = json_schema_grammar(JsonSchemaConverter(), schema)
        pytest.fail(f"compiled into {grammar!r}")  # reached only if nothing was refused
    assert err.value.status == 400


@pytest.mark.parametrize("schema,good,bad", [
    ({"$defs": {"node": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
      "$ref": "#/$defs/node"},  # pydantic's shape for a recursive model
     '{"name": "a", "kids": [{"name": "b", "kids": []}]}', '{"kids": []}'),
    ({"type": "array", "items": False}, "[]", "[1]"),
    ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "array",
      "items": [{"type": "integer"}, {"type": "string"}]}, '[1, "a"]', '["a", 1]'),
])
def test_recursive_and_older_draft_schemas_compile(engine, schema, good, bad):
    from localgw.chat.grammars import json_schema_grammar
    from localgw.chat.schema_grammar import JsonSchemaConverter

    grammar = json_schema_grammar(JsonSchemaConverter(), schema)
    assert engine.accepts(grammar, good) and not engine.accepts(grammar, bad)
