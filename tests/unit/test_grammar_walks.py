"""What llama.cpp's grammar engine lets through validates against the schema.

Each schema's grammar is walked a token at a time with random logits over the whole vocabulary
(tests/grammar_engine.py, `walk`), the way sampling picks among what the grammar allows, and the
finished text is checked by jsonschema with the Draft 2020-12 format checker.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from localgw.chat.grammars import json_schema_grammar
from localgw.chat.schema_grammar import JsonSchemaConverter

CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER

SCHEMAS = {
    "record": {"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid"},
        "code": {"type": "string", "pattern": r"^[A-Z]{2}\d{3}(-[a-z]+)?$"},
        "born": {"type": "string", "format": "date"},
        "at": {"type": "string", "format": "date-time"},
        "alarm": {"type": "string", "format": "time"},
        "age": {"type": "integer", "minimum": 0, "maximum": 539},
        "score": {"type": "number", "exclusiveMinimum": -1.5, "maximum": 1e308},
        "kind": {"enum": ["a", "b", 3]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "minItems": 1,
                 "maxItems": 3},
        "note": {"type": "string", "minLength": 2, "maxLength": 12},
        "either": {"anyOf": [{"type": "null"}, {"type": "integer", "exclusiveMaximum": -7}]}},
        "required": ["id", "code", "born", "at", "alarm", "age", "score", "kind", "tags"],
        "additionalProperties": False},
    "tuple": {"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "string", "pattern": "x+y$"}]},
    "untyped": {"type": "object", "properties": {"s": {"minLength": 3, "maxLength": 4},
                                                 "n": {"maximum": -2}, "a": {"maxItems": 2},
                                                 "t": True, "one": {"type": ["integer"], "minimum": 5}},
                "required": ["s", "n", "a", "t", "one"]},
    "escapes": {"type": "array", "items": {"type": "string", "pattern": r'^[^a-z]{1,3}$'},
                "minItems": 2, "maxItems": 2},
    "escaped constants": {"type": "object", "properties": {
        "k\\ey": {"enum": ["a\\b", 'q"x', "tab\there", "new\nline"]}, "c": {"const": "back\\slash"}},
        "required": ["k\\ey", "c"]},
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_what_the_grammar_lets_through_validates(engine, name):
    schema = SCHEMAS[name]
    grammar = json_schema_grammar(JsonSchemaConverter(), schema)
    finished = 0
    for seed in range(5):
        text = engine.walk(grammar, seed, max_tokens=300)
        if text is not None:
            finished += 1
            jsonschema.validate(json.loads(text), schema, format_checker=CHECKER)
    assert finished >= 3
