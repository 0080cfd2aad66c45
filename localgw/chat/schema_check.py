"""Fail closed: a JSON schema keyword the grammar cannot enforce is a 400, never a silent
unconstrained answer, and so is a bound past what the grammar holds cheaply. The error names the
keyword, its JSON pointer and the limit.

Limits (see chat/schema_grammar.py for why): minLength, maxLength, minItems, maxItems and the
counts in a pattern at most gbnf.MAX_REPEAT; integers of at most numbers.MAX_INTEGER_DIGITS digits
and bounded numbers of at most numbers.MAX_DIGITS, so a bound no such value can meet is refused;
patterns within chat/pattern.py's limits.
"""

from __future__ import annotations

import warnings

from localgw.chat import gbnf
from localgw.chat.numbers import (MAX_INTEGER_DIGITS, integer_bounds, number_bounds,
                                  number_range)
from localgw.chat.pattern import pattern_problem
from localgw.errors import InvalidRequest

# Keywords that only describe, never constrain.
_ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                "deprecated", "readOnly", "writeOnly", "strict", "name"}
_BY_TYPE = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "prefixItems", "minItems", "maxItems"},
    "string": {"pattern", "format", "minLength", "maxLength"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "boolean": set(),
    "null": set(),
}
_COMBINATORS = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions"}
_FORMATS = {"date", "time", "date-time", "uuid"}
_TYPES = set(_BY_TYPE)
_COUNTS = (("minLength", "maxLength"), ("minItems", "maxItems"))
_INT_LIMIT = 10 ** MAX_INTEGER_DIGITS - 1
PARAM = "response_format.json_schema.schema"


def _fail(keyword: str, pointer: str, why: str = "") -> None:
    where = pointer or "/"
    raise InvalidRequest(f"JSON schema keyword '{keyword}' at {where} cannot be enforced by the "
                         f"grammar{': ' + why if why else ''}; remove it or use a supported form",
                         param=PARAM, code="unsupported_schema")


def _invalid(what: str, pointer: str) -> None:
    raise InvalidRequest(f"JSON schema at {pointer or '/'}: {what}", param=PARAM)


def _kind(schema: dict):
    kind = schema.get("type")
    return kind[0] if isinstance(kind, list) and len(kind) == 1 else kind


def check_schema(schema, pointer: str = "", root=None) -> None:
    """Raise InvalidRequest for the first thing in `schema` the grammar cannot honour."""
    if root is None:
        _check_meta(schema)
    root = schema if root is None else root
    if isinstance(schema, bool):
        if schema is False:
            _fail("false", pointer, "a schema that matches nothing")
        return
    if not isinstance(schema, dict):
        _invalid("JSON schema must be an object", pointer)
    _check_keywords(schema, pointer)
    _check_string(schema, pointer)
    _check_counts(schema, pointer)
    _check_bounds(schema, pointer)
    _check_shapes(schema, pointer)
    if "$ref" in schema:
        _check_ref(schema["$ref"], pointer, root)
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_schema(sub, f"{pointer}/{key}/{_escape(name)}", root)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems", "items"):
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                check_schema(sub, f"{pointer}/{key}/{i}", root)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            check_schema(schema[key], f"{pointer}/{key}", root)


def _check_meta(schema) -> None:
    """The schema is a JSON schema at all: valid against its draft's meta-schema (2020-12 unless
    its `$schema` names another), so no keyword reaches the converter with a value of the wrong
    shape (`"type": {}`, `"properties": []`…)."""
    from jsonschema import exceptions, validators

    default = validators.Draft202012Validator
    with warnings.catch_warnings():  # an unknown $schema: the default draft, said once here
        warnings.simplefilter("ignore", DeprecationWarning)
        cls = validators.validator_for(schema, default=default) if isinstance(schema, dict) \
            else default
    error = exceptions.best_match(cls(cls.META_SCHEMA).iter_errors(schema))
    if error is not None:
        where = "".join(f"/{_escape(str(part))}" for part in error.absolute_path)
        message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
        _invalid(f"not a valid JSON schema: {message}", where)


def _check_keywords(schema: dict, pointer: str) -> None:
    types = schema.get("type")
    type_list = types if isinstance(types, list) else [types] if types else []
    for t in type_list:
        if t not in _TYPES:
            _fail("type", f"{pointer}/type", f"unknown type {t!r}")
    allowed = set(_ANNOTATIONS) | _COMBINATORS
    for t in type_list or _TYPES:
        allowed |= _BY_TYPE[t]
    for key in schema:
        if key not in allowed:
            _fail(key, f"{pointer}/{key}")
    if len(type_list) > 1:
        constrained = [k for k in schema if any(k in _BY_TYPE[t] for t in type_list)]
        if constrained:
            _fail(constrained[0], f"{pointer}/{constrained[0]}", "not with a list of types")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        _invalid("enum must be a non-empty array", pointer)


def _check_string(schema: dict, pointer: str) -> None:
    if "format" in schema and schema["format"] not in _FORMATS:
        _fail("format", f"{pointer}/format", f"format {schema['format']!r} (supported: "
              f"{', '.join(sorted(_FORMATS))})")
    if "pattern" in schema:
        why = pattern_problem(schema["pattern"])
        if why:
            _fail("pattern", f"{pointer}/pattern", why)
    lengths = "minLength" in schema or "maxLength" in schema
    if "pattern" in schema and ("format" in schema or lengths):
        _fail("pattern", f"{pointer}/pattern", "not together with format or length bounds")
    if "format" in schema and lengths:
        _fail("format", f"{pointer}/format", "not together with minLength or maxLength")


def _check_counts(schema: dict, pointer: str) -> None:
    """Length and item counts are integers in 0..MAX_REPEAT, the least not above the most."""
    for low, high in _COUNTS:
        for key in (low, high):
            value = schema.get(key)
            if key in schema and (type(value) is not int or value < 0):
                _invalid(f"{key} must be a non-negative integer", pointer)
            if key in schema and value > gbnf.MAX_REPEAT:
                _fail(key, f"{pointer}/{key}", f"{value} is past the limit of {gbnf.MAX_REPEAT}")
        if schema.get(low, 0) > schema.get(high, gbnf.MAX_REPEAT):
            _invalid(f"{low} is above {high}", pointer)


def _check_bounds(schema: dict, pointer: str) -> None:
    """Bounds are numbers, and some value the grammar writes lies between them."""
    present = [k for k in _BY_TYPE["number"] if k in schema]
    for key in present:
        if isinstance(schema[key], bool) or not isinstance(schema[key], (int, float)):
            _invalid(f"{key} must be a number", pointer)
    if not present:
        return
    lo, hi, lo_x, hi_x = number_bounds(schema)
    if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_x or hi_x))):
        _invalid("no value lies between its bounds", pointer)
    key = ("exclusiveMinimum" if lo_x else "minimum") if lo is not None else (
        "exclusiveMaximum" if hi_x else "maximum")
    if _kind(schema) == "integer":
        first, last = integer_bounds(schema)
        if first is not None and last is not None and first > last:
            _invalid("no integer lies between its bounds", pointer)
        if (first or 0) > _INT_LIMIT or (last or 0) < -_INT_LIMIT:
            _fail(key, f"{pointer}/{key}", f"integers are written with at most "
                  f"{MAX_INTEGER_DIGITS} digits, and none of those is in range")
        return
    try:
        number_range(lo, hi, lo_x, hi_x)
    except ValueError as exc:
        _fail(key, f"{pointer}/{key}", str(exc))


def _check_shapes(schema: dict, pointer: str) -> None:
    """Keyword combinations the converter would drop one side of."""
    props = schema.get("properties") or {}
    if "required" in schema:
        if not isinstance(schema["required"], list):
            _invalid("required must be an array", pointer)
        missing = [k for k in schema["required"] if k not in props]
        if missing:
            _fail("required", f"{pointer}/required", f"it names {missing[0]!r}, which is not "
                  f"in properties")
    tuple_items = schema.get("prefixItems", schema.get("items"))
    if isinstance(tuple_items, list):
        n = len(tuple_items)
        if "prefixItems" in schema and isinstance(schema.get("items"), dict):
            _fail("prefixItems", f"{pointer}/prefixItems", "not together with an items schema")
        if schema.get("minItems", 0) > n or schema.get("maxItems", n) < n:
            _fail("prefixItems", f"{pointer}/prefixItems", f"the grammar writes exactly {n} "
                  f"items, outside minItems/maxItems")


def _check_ref(ref, pointer: str, root) -> None:
    """A local reference to a schema; following references from it reaches one that is more
    than a reference (a loop of bare references describes no value)."""
    seen = set()
    while True:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            _fail("$ref", f"{pointer}/$ref", "only local references (#/$defs/...) are supported")
        if ref in seen:
            _fail("$ref", f"{pointer}/$ref", f"references loop back to {ref} without "
                  "describing a value")
        seen.add(ref)
        target = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                _invalid(f"$ref {ref} points nowhere", pointer)
            target = target[part]
        if not isinstance(target, dict) or "$ref" not in target:
            return
        ref = target["$ref"]


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
