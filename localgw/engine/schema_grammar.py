"""JSON schema → llama.cpp GBNF, on llama-cpp-python's own SchemaConverter.

We add what its converter lacks and people use: integer bounds (minimum, maximum and their
exclusive forms), as digit-range alternatives the grammar can enforce.
"""

from __future__ import annotations

import json
from llama_cpp.llama_grammar import SchemaConverter


def _digit_pattern(start: str, stop: str) -> str:
    parts = []
    for a, b in zip(start, stop):
        if a == b:
            parts.append(f'"{a}"')
        elif a == "0" and b == "9":
            parts.append("[0-9]")
        else:
            parts.append(f"[{a}-{b}]")
    return " ".join(parts)


def _split(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] (0 ≤ lo ≤ hi) as sub-ranges each expressible digit by digit."""
    stops = {hi}
    k = 1
    while True:
        s = int(str(lo)[:-k] + "9" * k) if len(str(lo)) > k else 10 ** k - 1
        if lo <= s < hi:
            stops.add(s)
            k += 1
        else:
            break
    k = 1
    while True:
        s = (hi + 1) - (hi + 1) % 10 ** k - 1
        if lo <= s < hi:
            stops.add(s)
            k += 1
        else:
            break
    out, start = [], lo
    for stop in sorted(stops):
        out.append((start, stop))
        start = stop + 1
    return out


def _nonneg_range(lo: int, hi: int | None) -> list[str]:
    alts = []
    top = hi if hi is not None else 10 ** len(str(lo)) - 1
    if lo <= top:
        for a, b in _split(lo, top):
            sa, sb = str(a), str(b)
            if len(sa) < len(sb):  # only when a == 0-ish boundaries; pad by splitting further
                for x, y in _split(a, b):
                    alts.append(_digit_pattern(str(x), str(y)))
            else:
                alts.append(_digit_pattern(sa, sb))
    if hi is None:  # any integer with more digits than lo
        alts.append('[1-9] ' + " ".join(["[0-9]"] * len(str(lo))) + " [0-9]*")
    return alts


def int_range(lo: int | None, hi: int | None) -> str:
    """A GBNF expression for the integers in [lo, hi] (None: unbounded)."""
    alts = []
    if lo is None or lo < 0:  # negative part: -[max(1, -hi), -lo]
        neg_hi = None if lo is None else -lo
        neg_lo = 1 if hi is None or hi >= 0 else -hi
        if neg_hi is None or neg_lo <= neg_hi:
            alts += [f'"-" ( {p} )' for p in _nonneg_range(neg_lo, neg_hi)]
    if hi is None or hi >= 0:
        alts += _nonneg_range(max(lo or 0, 0), hi)
    if not alts:
        raise ValueError(f"empty integer range [{lo}, {hi}]")
    return "( " + " | ".join(f"( {a} )" for a in alts) + " )"


# llama-cpp-python's `char` lets raw newlines and other control characters into strings, which
# makes invalid JSON; this is the JSON spec's own definition.
JSON_CHAR = (r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
             r'[0-9a-fA-F] [0-9a-fA-F])')


class JsonSchemaConverter(SchemaConverter):
    def __init__(self):
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)

    def visit(self, schema, name):
        if isinstance(schema, dict) and schema.get("type") == "integer" and any(
                k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            lo = schema.get("minimum")
            if "exclusiveMinimum" in schema:
                lo = max(lo if lo is not None else -10 ** 18, int(schema["exclusiveMinimum"]) + 1)
            hi = schema.get("maximum")
            if "exclusiveMaximum" in schema:
                hi = min(hi if hi is not None else 10 ** 18, int(schema["exclusiveMaximum"]) - 1)
            lo = None if lo is None else int(-(-lo // 1))  # ceil for float bounds
            hi = None if hi is None else int(hi // 1)
            rule_name = name + "-" if name in ("root",) else name or "root"
            return self._add_rule(rule_name, int_range(lo, hi) + " space")
        return super().visit(schema, name)

    def add_schema(self, schema: dict, name: str) -> str:
        """Resolve refs and add the rules for `schema`; returns its rule name."""
        schema = self.resolve_refs(json.loads(json.dumps(schema)), f"schema-{name}")
        return self.visit(schema, name)

    def add_rule(self, name: str, body: str) -> str:
        return self._add_rule(name, body)

    def literal(self, text: str) -> str:
        return self._format_literal(text)

    def grammar(self, root_body: str) -> str:
        self._rules["root"] = root_body
        if "char" in self._rules:  # JSON strings may not hold raw control characters
            self._rules["char"] = JSON_CHAR
        return self.format_grammar()
