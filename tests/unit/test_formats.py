"""`date`, `time` and `date-time` grammars against jsonschema's own format checkers.

JSON schema 2020-12 reads these as RFC 3339 (`full-date`, `full-time`, `date-time`); its checker
for `time` and `date-time` needs the optional `rfc3339-validator`, which the test extra installs.
(`jsonschema.FormatChecker()` without a draft applies draft 3's `time`, plain `HH:MM:SS`, which
no RFC 3339 time, with its required offset, satisfies.)

Every date of many years is checked both ways; times over every hour and minute with a spread of
seconds, fractions and offsets; a random sample through llama.cpp's engine, which must agree.
"""

from __future__ import annotations

import calendar
import random

import jsonschema
import pytest

from localgw.chat.grammars import json_schema_grammar
from localgw.chat.schema_grammar import JsonSchemaConverter

from tests.grammar_engine import gbnf_regex

CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER
YEARS = sorted({*range(0, 30), *range(96, 105), *range(396, 405), *range(1896, 1905),
                *range(1996, 2005), *range(2096, 2105), *range(2396, 2405), *range(9990, 10000),
                *random.Random(1).sample(range(10000), 200)})
TIMES = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(26) for m in range(62) for s in (0, 7, 59, 60)]
FRACTIONS = ["", ".123", ".1", ".999999"]
OFFSETS = ["Z", "+00:00", "-00:00", "+05:30", "-23:59", "+24:00", "-12:60", "+9:00", "z", ""]


def format_rule(fmt: str):
    return gbnf_regex(json_schema_grammar(JsonSchemaConverter(), {"type": "string", "format": fmt}),
                      fmt)


def test_the_checkers_are_the_rfc_3339_ones():
    assert not CHECKER.conforms("2023-02-29", "date") and CHECKER.conforms("2024-02-29", "date")
    assert CHECKER.conforms("10:00:00Z", "time") and not CHECKER.conforms("10:00:00", "time")
    assert not CHECKER.conforms("2024-01-01T24:00:00Z", "date-time")


def test_dates_are_exactly_the_valid_ones():
    rx = format_rule("date")
    written = 0
    for year in YEARS:
        for month in range(14):
            for day in range(33):
                value = f"{year:04d}-{month:02d}-{day:02d}"
                assert bool(rx.fullmatch(value)) == CHECKER.conforms(value, "date"), value
                written += bool(rx.fullmatch(value))
    assert written > 100_000


def test_29_february_exactly_in_gregorian_leap_years():
    rx = format_rule("date")
    for year in range(10000):
        value = f"{year:04d}-02-29"
        assert bool(rx.fullmatch(value)) == (year > 0 and calendar.isleap(year)), value
        assert bool(rx.fullmatch(value)) == CHECKER.conforms(value, "date"), value


@pytest.mark.parametrize("offset", OFFSETS)
def test_times_are_valid_and_every_valid_time_is_written(offset):
    rx = format_rule("time")
    for time in TIMES:
        for fraction in FRACTIONS:
            value = time + fraction + offset
            valid = CHECKER.conforms(value, "time")
            if rx.fullmatch(value):
                assert valid, value
            elif valid:  # what RFC 3339 allows and this grammar never writes
                assert fraction not in ("", ".123") or offset == "z", value


def test_date_times_are_valid():
    rx, rng = format_rule("date-time"), random.Random(7)
    written = 0
    for _ in range(20_000):
        value = (f"{rng.choice(YEARS):04d}-{rng.randrange(14):02d}-{rng.randrange(33):02d}T"
                 f"{rng.choice(TIMES)}{rng.choice(FRACTIONS)}{rng.choice(OFFSETS)}")
        if rx.fullmatch(value):
            written += 1
            assert CHECKER.conforms(value, "date-time"), value
    assert written > 1000
    assert rx.fullmatch("2024-02-29T23:59:59.123-23:59")


@pytest.mark.parametrize("fmt", ["date", "time", "date-time"])
def test_llama_cpp_agrees_with_the_regex(engine, fmt):
    g = json_schema_grammar(JsonSchemaConverter(), {"type": "string", "format": fmt})
    rx, rng = gbnf_regex(g, fmt), random.Random(fmt)
    for _ in range(300):
        date = f"{rng.choice(YEARS):04d}-{rng.randrange(14):02d}-{rng.randrange(33):02d}"
        time = rng.choice(TIMES) + rng.choice(FRACTIONS) + rng.choice(OFFSETS)
        value = {"date": date, "time": time, "date-time": f"{date}T{time}"}[fmt]
        assert engine.accepts(g, f'"{value}"') == bool(rx.fullmatch(value)), value
