"""Fail-closed schema checks, and the integer-range grammar, checked exhaustively."""

import random
import re

import pytest

from localgw.chat.grammars import json_schema_grammar
from localgw.chat.numbers import int_range
from localgw.chat.schema_check import check_schema
from localgw.chat.schema_grammar import JsonSchemaConverter
from localgw.errors import InvalidRequest


@pytest.mark.parametrize("schema,keyword,pointer", [
    ({"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}, "format", "/properties/a/format"),
    ({"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.5}}}, "multipleOf", "/properties/n/multipleOf"),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems", "/uniqueItems"),
    ({"not": {"type": "string"}}, "not", "/not"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties", "/patternProperties"),
    ({"type": "object", "properties": {"s": {"type": "string", "pattern": "(?=a)b"}}}, "pattern", "/properties/s/pattern"),
    ({"type": "object", "properties": {"s": {"$ref": "https://example.com/s.json"}}}, "$ref", "/properties/s/$ref"),
    ({"anyOf": [{"type": "string"}, {"type": "integer", "multipleOf": 3}]}, "multipleOf", "/anyOf/1/multipleOf"),
    ({"$defs": {"pet": {"type": "object", "minProperties": 1}}, "$ref": "#/$defs/pet"}, "minProperties", "/$defs/pet/minProperties"),
    ({"type": "object", "if": {}, "then": {}}, "if", "/if"),
])
def test_unsupported_keywords_are_400s_naming_keyword_and_pointer(schema, keyword, pointer):
    with pytest.raises(InvalidRequest) as err:
        check_schema(schema)
    assert f"'{keyword}'" in err.value.message and pointer in err.value.message
    assert err.value.status == 400


def test_supported_features_pass_and_compile():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "kind": {"enum": ["cat", "dog"]},
            "version": {"const": 2},
            "born": {"type": "string", "format": "date"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "owner": {"$ref": "#/$defs/person"},
            "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "one": {"oneOf": [{"type": "boolean"}, {"type": "integer", "exclusiveMaximum": 10}]},
        },
        "required": ["name", "age", "kind"],
        "additionalProperties": False,
        "$defs": {"person": {"type": "object", "properties": {"id": {"type": "integer"}},
                             "required": ["id"]}},
    }
    check_schema(schema)
    grammar = json_schema_grammar(JsonSchemaConverter(), schema)
    assert "root ::= json" in grammar and "json-age ::=" in grammar


def _to_regex(expr: str) -> str:
    return re.sub(r'"(.)"', lambda m: re.escape(m.group(1)), expr).replace(" ", "")


@pytest.mark.parametrize("lo,hi", [(0, 0), (0, 9), (1, 100), (5, 1234), (-50, -3), (-7, 12),
                                   (100, 999), (0, None), (37, None), (None, 5), (None, -4), (10, 10),
                                   (0, 539), (-1999, 1099), (0, 1999), (-300, -199), (20, 100)])
def test_int_range_matches_exactly_the_integers_in_range(lo, hi):
    rx = re.compile("^" + _to_regex(int_range(lo, hi)) + "$")
    for x in range(-2100, 2100):
        assert bool(rx.match(str(x))) == ((lo is None or x >= lo) and (hi is None or x <= hi)), x


def test_int_range_matches_exactly_for_random_bounds():
    rng = random.Random(0)
    for _ in range(300):
        lo, hi = sorted(rng.randrange(-3000, 3000) for _ in range(2))
        rx = re.compile("^" + _to_regex(int_range(lo, hi)) + "$")
        for x in range(lo - 30, hi + 31):
            assert bool(rx.match(str(x))) == (lo <= x <= hi), (lo, hi, x)
