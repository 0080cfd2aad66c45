"""Number bounds in JSON schemas: the decimal-range grammar (chat.numbers.number_range) checked by
brute force against exact decimal arithmetic, and its place in schema grammars; integers too, and
both through llama.cpp's own grammar engine on a sample.

The grammar is turned into a regex (it uses only single-character literals, classes, groups,
alternation, `?` and `{m,n}`) and every candidate string is checked both ways: the grammar
accepts it exactly when it is an exponent-free JSON number of at most MAX_DIGITS digits, not
negative zero, and in range.
"""

from __future__ import annotations

import math
import random
import re
from decimal import Decimal

import pytest

from localgw.chat.numbers import MAX_DIGITS, int_range, number_range

JSON_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?\Z")


def to_regex(expr: str) -> re.Pattern:
    body = re.sub(r'"(.)"', lambda m: re.escape(m.group(1)), expr).replace(" ", "")
    return re.compile(body + r"\Z")


def in_language(s: str, lo, hi, lo_x: bool, hi_x: bool) -> bool:
    if not JSON_DECIMAL.match(s) or sum(c.isdigit() for c in s) > MAX_DIGITS:
        return False
    v = Decimal(s)
    if s.startswith("-") and v == 0:
        return False
    if lo is not None and (v <= Decimal(repr(lo)) if lo_x else v < Decimal(repr(lo))):
        return False
    if hi is not None and (v >= Decimal(repr(hi)) if hi_x else v > Decimal(repr(hi))):
        return False
    return True


def spellings(v: Decimal) -> set[str]:
    """v written with its own fraction digits, and with one to three more (trailing zeros)."""
    exp = -v.as_tuple().exponent if v.as_tuple().exponent < 0 else 0
    out = set()
    for digits in range(exp, exp + 4):
        out.add(f"{v:.{digits}f}")
    out.add(f"{v:f}")
    return out


def candidates(bounds: list, rng: random.Random) -> set[str]:
    out = set()
    # Every decimal with an integer part up to 60 and up to two fraction digits, both signs.
    for i in range(61):
        for frac in [""] + [f".{d}" for d in range(10)] + [f".{d:02d}" for d in range(100)]:
            out |= {f"{i}{frac}", f"-{i}{frac}"}
    # Around each bound and zero: steps of 10^-k, k = 0..MAX_DIGITS, a few steps either way.
    for b in [Decimal(repr(x)) for x in bounds if x is not None] + [Decimal(0)]:
        for k in range(MAX_DIGITS + 1):
            step = Decimal(1).scaleb(-k)
            for j in range(-3, 4):
                out |= spellings(b + j * step)
    # Random decimals of every length, and the lengths just past the limit.
    for _ in range(3000):
        whole = rng.choice(["0", str(rng.randrange(1, 10 ** rng.randrange(1, 17)))])
        frac = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 18)))
        out.add(("-" if rng.random() < 0.5 else "") + whole + ("." + frac if frac else ""))
    # Not JSON numbers, or written in a way the grammar never produces.
    out |= {"", "-", ".5", "5.", "01", "-01.5", "00", "1e3", "+1", "-0", "-0.0", "-0.00", "0.", "1..2"}
    return out


CASES = [
    (0, 1, False, False), (0, 1, True, False), (0, 1, False, True), (0, 1, True, True),
    (-5.5, 40, True, False), (0.25, 0.5, False, False), (0.25, 0.5, True, True),
    (0.5, None, False, False), (0.5, None, True, False), (None, 0.5, False, True),
    (-1, 1, False, False), (-0.25, 0.75, False, True), (None, -2.5, False, False),
    (-100.125, -0.001, False, True), (0, None, True, False), (None, 0, False, True),
    (None, 0, False, False), (3.14159, 3.1416, False, False), (0.5, 0.5, False, False),
    (0.001, 0.002, True, False), (12345.678, 12346.5, False, True), (0.1, 0.2, False, False),
    (-40, -39.95, False, False), (9.99, 10.01, True, True), (None, None, False, False),
    (-0.5, 0, False, False), (0, 0, False, False), (1, 20, False, False), (-7, 7.25, True, True),
    # Bounds past what 15 digits reach bind nothing; near the edge they still do.
    (None, 1e100, False, False), (-1e308, 1e308, True, True), (-1e20, 5, False, True),
    (0.5, 1e15, False, True), (-999999999999999, -999999999999998.5, False, False),
    (999999999999998, None, True, False), (1e-300, 1, True, False),
]


@pytest.mark.parametrize("lo,hi,lo_x,hi_x", CASES)
def test_number_range_accepts_exactly_the_in_range_decimals(lo, hi, lo_x, hi_x):
    rx = to_regex(number_range(lo, hi, lo_x, hi_x))
    rng = random.Random(f"{lo},{hi},{lo_x},{hi_x}")
    strings = candidates([lo, hi], rng)
    accepted = 0
    for s in strings:
        want = in_language(s, lo, hi, lo_x, hi_x)
        assert bool(rx.match(s)) == want, (s, want)
        accepted += want
    assert accepted > 0


def test_every_accepted_value_is_in_range_as_a_double():
    """What a client's JSON parser reads (a double) stays in range, even at 15 digits."""
    rx = to_regex(number_range(None, 40, False, True))
    assert rx.match("39.9999999999999") and float("39.9999999999999") < 40
    assert not rx.match("39.999999999999999")  # float() reads this as 40.0
    rx = to_regex(number_range(0, 1, True, True))
    assert rx.match("0.99999999999999") and not rx.match("0.999999999999999999")


@pytest.mark.parametrize("lo,hi,lo_x,hi_x", [(1, 0, False, False), (0.5, 0.5, True, False),
                                            (2, 2, False, True), (0, 1e-16, True, False),
                                            (1e15, None, False, False), (1e308, None, True, False),
                                            (None, -1e15, False, False),
                                            (999999999999999, None, True, False)])
def test_empty_ranges_raise(lo, hi, lo_x, hi_x):
    with pytest.raises(ValueError):
        number_range(lo, hi, lo_x, hi_x)


def test_number_bounds_pass_the_schema_check_and_compile():
    from localgw.chat.grammars import json_schema_grammar
    from localgw.chat.schema_check import check_schema
    from localgw.chat.schema_grammar import JsonSchemaConverter

    schema = {"type": "object", "properties": {
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "t": {"type": "number", "exclusiveMinimum": -5.5, "maximum": 40},
        "tight": {"type": "number", "minimum": 1, "exclusiveMinimum": 1}},  # the tighter wins
        "required": ["confidence", "t", "tight"]}
    check_schema(schema)
    grammar = json_schema_grammar(JsonSchemaConverter(), schema)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines() if " ::= " in line)
    confidence = to_regex(rules["json-confidence"].removesuffix(" space"))
    assert confidence.match("0.75") and confidence.match("1") and not confidence.match("1.5")
    tight = to_regex(rules["json-tight"].removesuffix(" space"))
    assert tight.match("1.5") and not tight.match("1") and not tight.match("1.0")


@pytest.mark.parametrize("bounds", [{"minimum": 2, "maximum": 1}, {"minimum": 1, "exclusiveMaximum": 1},
                                    {"exclusiveMinimum": 0.5, "maximum": 0.5}, {"minimum": "0"},
                                    {"maximum": True}])
def test_impossible_or_malformed_bounds_are_400s(bounds):
    from localgw.chat.schema_check import check_schema
    from localgw.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as err:
        check_schema({"type": "object", "properties": {"x": {"type": "number", **bounds}}})
    assert "/properties/x" in err.value.message and err.value.status == 400


def test_integer_bounds_without_an_integer_between_are_400s():
    from localgw.chat.schema_check import check_schema
    from localgw.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        check_schema({"type": "integer", "minimum": 1.2, "maximum": 1.8})
    check_schema({"type": "integer", "minimum": 0.5, "maximum": 1.5})


@pytest.mark.parametrize("schema,good,bad", [
    ({"type": ["number"], "minimum": 0, "maximum": 1}, "0.5", "2"),
    ({"type": "number", "minimum": 0, "maximum": 10, "enum": [2, 3]}, "3", "5"),
])
def test_one_type_lists_are_bounded_and_enums_stay_enums(schema, good, bad):
    from localgw.chat.schema_grammar import JsonSchemaConverter

    conv = JsonSchemaConverter()
    rule = conv.add_schema(schema, "x")
    grammar = conv.grammar(rule)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines() if " ::= " in line)
    body = rules["x"].removesuffix(" space")
    if "enum" in schema:
        assert body.replace('"', "").replace(" ", "").split("|") == ["2", "3"]
    else:
        rx = to_regex(body)
        assert rx.match(good) and not rx.match(bad)


def test_number_grammar_size_does_not_follow_the_bounds_magnitude():
    plain = len(number_range(None, 1))
    for hi in (1e16, 1e100, 1e308):
        assert len(number_range(None, hi)) <= plain * 2
        assert number_range(None, hi) == number_range(None, None)


INT_CASES = [(None, None), (None, 10 ** 100), (-10 ** 308, 10 ** 308), (-5, 10 ** 20),
             (10 ** 15, None), (None, -(10 ** 15) + 3), (9999999999999990, None),
             (-9999999999999999, -9999999999999990)]


@pytest.mark.parametrize("lo,hi", INT_CASES)
def test_int_range_holds_sixteen_digits_whatever_the_bounds(lo, hi):

    rx = to_regex(int_range(lo, hi))
    rng = random.Random(f"{lo},{hi}")
    values = [rng.randrange(-10 ** rng.randrange(1, 18), 10 ** rng.randrange(1, 18)) for _ in range(3000)]
    values += [b + d for b in (lo, hi, 10 ** 16, -10 ** 16, 0) if b is not None for d in range(-3, 4)]
    for x in values:
        want = len(str(abs(x))) <= 16 and (lo is None or x >= lo) and (hi is None or x <= hi)
        assert bool(rx.match(str(x))) == want, x


@pytest.mark.parametrize("bounds,first,last", [
    ({"exclusiveMinimum": -0.5, "exclusiveMaximum": 0.5}, 0, 0),
    ({"minimum": -1.5, "maximum": 2.5}, -1, 2), ({"exclusiveMinimum": 3, "maximum": 3.9}, 4, 3),
    ({"exclusiveMinimum": -1e308}, int(-1e308) + 1, None), ({"minimum": 1e100}, int(1e100), None),
])
def test_integer_bounds_are_the_first_and_last_integers_allowed(bounds, first, last):
    from localgw.chat.numbers import integer_bounds

    assert integer_bounds(bounds) == (first, last)


@pytest.mark.parametrize("kind", ["number", "integer"])
def test_llama_cpp_agrees_on_random_bounds(engine, kind):
    from localgw.chat.grammars import json_schema_grammar
    from localgw.chat.numbers import number_bounds
    from localgw.chat.schema_grammar import JsonSchemaConverter

    rng = random.Random(kind)
    for _ in range(12):
        lo, hi = sorted(round(rng.uniform(-1000, 1000), rng.randrange(0, 4)) for _ in range(2))
        schema = {"type": kind, ("exclusiveMinimum" if rng.random() < 0.5 else "minimum"): lo,
                  ("exclusiveMaximum" if rng.random() < 0.5 else "maximum"): hi}
        lo, hi, lo_x, hi_x = number_bounds(schema)
        if kind == "integer" and math.floor(hi) - math.ceil(lo) < 2:
            continue
        g = json_schema_grammar(JsonSchemaConverter(), schema)
        values = [f"{rng.uniform(lo - 5, hi + 5):.{rng.randrange(0, 4)}f}" for _ in range(25)]
        values += [repr(lo), repr(hi), str(math.floor(lo)), str(math.ceil(hi))]
        for text in values:
            v = Decimal(text)
            ok = (v > Decimal(repr(lo)) if lo_x else v >= Decimal(repr(lo))) and (
                v < Decimal(repr(hi)) if hi_x else v <= Decimal(repr(hi)))
            if kind == "integer":
                ok = ok and "." not in text and "e" not in text
            if text.startswith("-") and v == 0:
                ok = False
            assert engine.accepts(g, text) == ok, (schema, text)
