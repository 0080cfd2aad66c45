"""Fail closed: a JSON schema keyword the grammar cannot enforce is a 400, never a silent
unconstrained answer. The error names the keyword and its JSON pointer."""

from __future__ import annotations

import math
import re

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
# Regex features the grammar converter cannot express.
_BAD_PATTERN = re.compile(r"\(\?|\\[bBdDsSwW1-9]|\\p\{")


def _fail(keyword: str, pointer: str, why: str = "") -> None:
    where = pointer or "/"
    raise InvalidRequest(f"JSON schema keyword '{keyword}' at {where} cannot be enforced by the "
                         f"grammar{': ' + why if why else ''}; remove it or use a supported form",
                         param="response_format.json_schema.schema", code="unsupported_schema")


def check_schema(schema, pointer: str = "", root=None) -> None:
    """Raise InvalidRequest for the first thing in `schema` the grammar cannot honour."""
    root = schema if root is None else root
    if isinstance(schema, bool):
        if schema is False:
            _fail("false", pointer, "a schema that matches nothing")
        return
    if not isinstance(schema, dict):
        raise InvalidRequest(f"JSON schema at {pointer or '/'} must be an object",
                             param="response_format.json_schema.schema")
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
    if isinstance(types, list) and len(type_list) > 1 and set(schema) & (
            set().union(*(_BY_TYPE[t] for t in type_list)) - set()):
        constrained = [k for k in schema if any(k in _BY_TYPE[t] for t in type_list)]
        if constrained:
            _fail(constrained[0], f"{pointer}/{constrained[0]}", "not with a list of types")
    if "format" in schema and schema["format"] not in _FORMATS:
        _fail("format", f"{pointer}/format", f"format {schema['format']!r} (supported: "
              f"{', '.join(sorted(_FORMATS))})")
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str) or _BAD_PATTERN.search(schema["pattern"]):
            _fail("pattern", f"{pointer}/pattern", "lookarounds, backreferences and \\d/\\w/\\s "
                  "classes are not supported; spell classes out, e.g. [0-9]")
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            _fail("pattern", f"{pointer}/pattern", f"invalid regex ({exc})")
    if "pattern" in schema and ("format" in schema or "minLength" in schema or "maxLength" in schema):
        _fail("pattern", f"{pointer}/pattern", "not together with format or length bounds")
    if "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            _fail("$ref", f"{pointer}/$ref", "only local references (#/$defs/...) are supported")
        target = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise InvalidRequest(f"$ref {ref} at {pointer or '/'} points nowhere",
                                     param="response_format.json_schema.schema")
            target = target[part]
    _check_bounds(schema, pointer)
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        if key in schema and (not isinstance(schema[key], int) or schema[key] < 0):
            raise InvalidRequest(f"{key} at {pointer or '/'} must be a non-negative integer",
                                 param="response_format.json_schema.schema")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise InvalidRequest(f"enum at {pointer or '/'} must be a non-empty array",
                             param="response_format.json_schema.schema")
    if "required" in schema and not isinstance(schema["required"], list):
        raise InvalidRequest(f"required at {pointer or '/'} must be an array",
                             param="response_format.json_schema.schema")
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_schema(sub, f"{pointer}/{key}/{_escape(name)}", root)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(schema.get(key) or []):
            check_schema(sub, f"{pointer}/{key}/{i}", root)
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            check_schema(sub, f"{pointer}/{key}", root)


def _check_bounds(schema: dict, pointer: str) -> None:
    """Bounds are numbers, and some value lies between them."""
    present = [k for k in _BY_TYPE["number"] if k in schema]
    for key in present:
        if isinstance(schema[key], bool) or not isinstance(schema[key], (int, float)):
            raise InvalidRequest(f"{key} at {pointer or '/'} must be a number",
                                 param="response_format.json_schema.schema")
    lows = [(schema[k], k == "exclusiveMinimum") for k in ("minimum", "exclusiveMinimum") if k in schema]
    highs = [(schema[k], k == "exclusiveMaximum") for k in ("maximum", "exclusiveMaximum") if k in schema]
    if not lows or not highs:
        return
    lo, lo_x = max(lows)  # the tighter bound; at a tie the exclusive one
    hi, hi_x = min(highs, key=lambda b: (b[0], not b[1]))
    empty = lo > hi or (lo == hi and (lo_x or hi_x))
    if schema.get("type") == "integer":
        first = math.floor(lo) + 1 if lo_x or lo != math.floor(lo) else lo
        last = math.ceil(hi) - 1 if hi_x or hi != math.ceil(hi) else hi
        empty = first > last
    if empty:
        raise InvalidRequest(f"JSON schema at {pointer or '/'}: no value lies between its bounds",
                             param="response_format.json_schema.schema")


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
