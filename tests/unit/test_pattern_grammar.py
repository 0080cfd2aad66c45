"""`pattern` → GBNF (chat/pattern.py): what the grammar writes matches the pattern, as a JSON
string's value; for anchored patterns it writes every matching value; what it cannot hold is a
precise 400.

Strings are checked through the grammar turned into a Python regex (tests/grammar_engine.py),
and a sample of them through llama.cpp's own grammar engine, which must agree with that regex.
"""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localgw.chat.grammars import json_schema_grammar
from localgw.chat.pattern import pattern_problem
from localgw.chat.schema_grammar import JsonSchemaConverter
from localgw.errors import InvalidRequest

from tests.grammar_engine import gbnf_regex

ANCHORED = {  # pattern: values it matches
    r"^[A-Z]{3}-[0-9]{2}$": ["ABC-12", "XYZ-00"], r"^\d{5}(-\d{4})?$": ["12345", "12345-6789"],
    r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$": ["x@y.io", "a.b+c@d-e.org"],
    r"^(?:ab|cd)*$": ["", "abcdab"], r"^\w+\s\w+$": ["ab cd", "a_1\tz"],
    r'^[^"\\]*$': ["", "it's"], r"^.{2,4}$": ["ab", "a é!"], r"^[\s\S]{0,3}$": ["", '"\\\n'],
    r"^(a|b|)c$": ["c", "ac"], r"^(?P<x>a)b?$": ["a", "ab"], r"^\$\d+(\.\d{2})?$": ["$1", "$12.50"],
    r"^[é-ÿ]+$": ["é", "ÿé"], r'^"quoted"$': ['"quoted"'], r"^a\\b$": ["a\\b"],
    r"^\t\n$": ["\t\n"], r"^[^a]$": ["b", '"', "\n"], r"^(a|bc){1,3}x$": ["ax", "bcabcx"],
    r"^(ab|cd){2,4}$": ["abcd", "cdcdcdcd"], r"\A[0-9]+\Z": ["0", "2024"], r"^(?:a$|b$)": ["a", "b"],
    r"^$": [""], r"^[-\]]+$": ["-", "]-]"], r"^\D\W\S$": ["a b", 'x"y'],
}
OPEN = [r"abc", r"^abc", r"xyz$", r"^a|b$", r"", r"(foo|bar)\d?"]
ALPHABET = 'abcdxyzAZé019-_ .$"\\\n\t@é'
# What a pattern may match that this grammar never writes: control characters without a short
# JSON escape, DEL (written only escaped), surrogates, and what Python's `.` matches but ECMA's
# does not (\r, U+2028, U+2029).
UNWRITTEN = re.compile("[\x00-\x07\x0b\x0d-\x1f\x7f\u2028\u2029\ud800-\udfff]")


def string_rule(pattern: str) -> re.Pattern:
    return gbnf_regex(json_schema_grammar(JsonSchemaConverter(), {"type": "string", "pattern": pattern}), "json")


def written(rx: re.Pattern, value: str) -> bool:
    """Whether the grammar writes `value` (JSON-encoded, between its quotes)."""
    return bool(rx.fullmatch(json.dumps(value, ensure_ascii=False)))


def matches(pattern: str, value: str, how=re.fullmatch) -> bool:
    """JSON schema patterns are ECMA-262 regexes: \\d, \\w and \\s are ASCII classes."""
    return bool(how(pattern, value, re.ASCII))


def candidates(seed: str) -> list[str]:
    rng = random.Random(seed)
    out = ["", "abc", "xyz", "b", "a", "ab", "cd", "abcd", "12345", "12345-6789", "$12.50", "foo",
           "bar7", "ABC-12", "x@y.io", "hello world", '"quoted"', "a\\b", "\t\n", "ééé"]
    out += ["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 9))) for _ in range(3000)]
    own = sorted(set(seed) - set("^$()[]{}|?*+\\") | set("1a.")) or ["a"]  # the pattern's characters
    out += ["".join(rng.choice(own) for _ in range(rng.randrange(0, 12))) for _ in range(3000)]
    return out


@pytest.mark.parametrize("pattern", ANCHORED)
def test_anchored_patterns_write_exactly_the_matching_values(pattern):
    rx = string_rule(pattern)
    assert all(matches(pattern, s) and written(rx, s) for s in ANCHORED[pattern])
    for s in candidates(pattern):
        assert written(rx, s) == matches(pattern, s), s


@pytest.mark.parametrize("pattern", OPEN)
def test_unanchored_patterns_write_only_matching_values(pattern):
    rx = string_rule(pattern)
    accepted = 0
    for s in candidates(pattern):
        if written(rx, s):
            accepted += 1
            assert matches(pattern, s, re.search), s
        if not pattern.endswith("$") and matches(pattern, s, re.match):
            assert written(rx, s), s  # the match at the start, then anything
    assert accepted


@pytest.mark.parametrize("pattern", [r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$", r"^(a|bc){1,3}x$",
                                     r"^.{2,4}$", r'^[^"\\]*$'])
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_matches_are_written(pattern, data):
    value = data.draw(st.from_regex(pattern, fullmatch=True))
    if not UNWRITTEN.search(value):
        assert written(string_rule(pattern), value)


@pytest.mark.parametrize("pattern", [r"^\d{5}(-\d{4})?$", r"^(a|bc){1,3}x$", r'^[^"\\]*$',
                                     r"^[é-ÿ]+$", r"abc", r"^a|b$"])
def test_llama_cpp_agrees_with_the_regex(engine, pattern):
    g = json_schema_grammar(JsonSchemaConverter(), {"type": "string", "pattern": pattern})
    rx = gbnf_regex(g, "json")
    for s in candidates(pattern)[:300]:
        text = json.dumps(s, ensure_ascii=False)
        assert engine.accepts(g, text) == bool(rx.fullmatch(text)), s


@pytest.mark.parametrize("pattern,why", [
    (r"(?=a)b", "assert"), (r"(a)\1", "groupref"), (r"a\b", r"\b"), (r"a^b", "^ and $"),
    (r"a$b", "^ and $"), (r"a++", "possessive"), (r"(?>a)", "atomic"), (r"(?i)abc", "flags"),
    (r"(?i:a)b", "flags"), (r"(?<=a)b", "assert"), (r"[", "invalid regex"), (r"(a|)*{2}", "invalid regex"),
    (r"^(a?){2,40}$", "limit 32"),
])
def test_unsupported_patterns_say_why(pattern, why):
    problem = pattern_problem(pattern)
    assert problem and why in problem.lower(), problem


def test_pattern_refusals_are_400s_with_the_pointer():
    with pytest.raises(InvalidRequest) as err:
        json_schema_grammar(JsonSchemaConverter(), {"type": "object", "properties": {
            "s": {"type": "string", "pattern": r"(?<=a)b"}}})
    assert "'pattern'" in err.value.message and "/properties/s/pattern" in err.value.message


def test_fixed_length_groups_repeat_up_to_the_limit_and_varying_ones_to_32():
    assert pattern_problem(r"^(ab|cd){1000000}$") is None
    assert pattern_problem(r"^([a-z]+,){1,32}$") is None
    assert pattern_problem(r"^([a-z]+){1,32}$") is None
    assert "limit 32" in pattern_problem(r"^(([a-z]+){1,4}x){1,9}$")
    assert pattern_problem(r"^([a-z]+)*$") is None  # unbounded: one parse stack per split
