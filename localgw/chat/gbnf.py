"""GBNF building blocks that stay cheap in llama.cpp: flat repetition, JSON-string characters,
and the size of a finished grammar.

llama.cpp's parser recurses once per parenthesis level, so nothing here nests: a repeated item is
always a rule name, a literal or a character class, and repetition uses llama.cpp's own
`x{m,n}`, which it expands into a chain of rules (`x` m times, then n-m rules
`S'(k) ::= x S'(k-1) |`).
A chain's tail calls keep the parse stack flat however long the chain is. llama.cpp refuses a
count above 2000, or (newer releases) silently drops it, so one `{m,n}` here never counts past
CHUNK; larger bounds are built from blocks of CHUNK items (see `repeat`).
"""

from __future__ import annotations

import json
import re
from typing import Callable

CHUNK = 1000            # the largest count one `{m,n}` carries
MAX_REPEAT = 1_000_000  # the largest bound a grammar holds (CHUNK blocks of CHUNK)
MAX_GRAMMAR_SIZE = 500_000  # characters of GBNF plus the rules llama.cpp expands repetitions into
MAX_GRAMMAR_DEPTH = 100     # parenthesis levels in one rule

Rule = Callable[[str], str]  # adds a rule with this body under a fresh name; returns the name


class GrammarTooLarge(ValueError):
    """A grammar past MAX_GRAMMAR_SIZE or MAX_GRAMMAR_DEPTH, or one that took too long to build."""


def _count(item: str, lo: int, hi: int | None) -> str:
    """`item` repeated lo..hi times (hi None: no upper bound) in one llama.cpp quantifier."""
    if hi is None:
        return {0: f"{item}*", 1: f"{item}+"}.get(lo, f"{item}{{{lo},}}")
    if hi == 0:
        return '""'
    if lo == hi:
        return item if lo == 1 else f"{item}{{{lo}}}"
    return f"{item}?" if (lo, hi) == (0, 1) else f"{item}{{{lo},{hi}}}"


def repeat(item: str, lo: int, hi: int | None, rule: Rule) -> str:
    """A GBNF expression for `item` repeated lo..hi times (hi None: unbounded), without nesting.

    `item` is one symbol (a rule name, a literal or a character class). Up to CHUNK it is
    llama.cpp's own `item{lo,hi}`. Past that, `block ::= item{CHUNK}` carries the thousands:
    lo items are `block{lo // CHUNK} item{lo % CHUNK}`, and up to r more are
    `block{0,q-1} item{0,CHUNK-1} | block{q} item{0,s}` with q, s = divmod(r, CHUNK): the first
    alternative gives every count below q·CHUNK, the second the rest up to r.
    """
    if not 0 <= lo <= MAX_REPEAT or hi is not None and not lo <= hi <= MAX_REPEAT:
        raise ValueError(f"repetition {lo}..{hi} outside 0..{MAX_REPEAT}")
    if hi is not None and hi <= CHUNK or hi is None and lo <= CHUNK:
        return _count(item, lo, hi)
    block = rule(_count(item, CHUNK, CHUNK))
    parts = []
    if lo >= CHUNK:
        parts.append(_count(block, lo // CHUNK, lo // CHUNK))
    if lo % CHUNK:
        parts.append(_count(item, lo % CHUNK, lo % CHUNK))
    if hi is None:
        parts.append(f"{item}*")
    elif hi - lo <= CHUNK:
        parts.append(_count(item, 0, hi - lo))
    else:
        q, s = divmod(hi - lo, CHUNK)
        fewer = ([_count(block, 0, q - 1)] if q > 1 else []) + [_count(item, 0, CHUNK - 1)]
        most = [_count(block, q, q)] + ([_count(item, 0, s)] if s else [])
        parts.append(rule(f"{' '.join(fewer)} | {' '.join(most)}"))
    return " ".join(p for p in parts if p != '""') or '""'


def repeat_separated(item: str, sep: str, lo: int, hi: int | None, rule: Rule) -> str:
    """lo..hi items with `sep` between them (a JSON array's elements), flat as `repeat`."""
    if hi == 0:
        return '""'
    rest = repeat(rule(f"{sep} {item}"), max(lo - 1, 0), None if hi is None else hi - 1, rule)
    some = f"{item} {rest}" if rest != '""' else item
    return some if lo > 0 else f"{rule(some)}?"


# ---- characters of a JSON string ---------------------------------------------------------------
# A set of characters is a list of inclusive code-point ranges. Inside a JSON string most
# characters stand for themselves; '"', '\' and the control characters must be escaped.
MAX_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)  # not characters: never written
_SPECIAL = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)]


def normalize(ranges) -> list[tuple[int, int]]:
    """Sorted, merged ranges."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def complement(ranges) -> list[tuple[int, int]]:
    """Every code point not in `ranges`."""
    out, start = [], 0
    for lo, hi in normalize(ranges):
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    return out + ([(start, MAX_CODE_POINT)] if start <= MAX_CODE_POINT else [])


def subtract(ranges, minus) -> list[tuple[int, int]]:
    return intersect(ranges, complement(minus))


def intersect(a, b) -> list[tuple[int, int]]:
    out = []
    for lo, hi in normalize(a):
        for lo2, hi2 in normalize(b):
            if max(lo, lo2) <= min(hi, hi2):
                out.append((max(lo, lo2), min(hi, hi2)))
    return normalize(out)


def _class_char(cp: int) -> str:
    ch = chr(cp)
    if ch.isascii() and ch.isalnum():
        return ch
    return f"\\x{cp:02X}" if cp < 0x80 else f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"


def char_class(ranges) -> str:
    """A GBNF character class for `ranges`, negated where that is shorter."""
    ranges = normalize(ranges)
    negated = complement(ranges)
    body, caret = (negated, "^") if len(negated) < len(ranges) else (ranges, "")
    parts = [_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}"
             for lo, hi in body]
    return f"[{caret}{''.join(parts)}]"


def literal(text: str) -> str:
    """A GBNF literal matching `text` exactly."""
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}" if ch not in '"\\' else "\\" + ch)
        else:
            out.append(ch)
    return f'"{"".join(out)}"'


def json_chars(ranges) -> str:
    """A GBNF expression for one character of `ranges` written inside a JSON string: itself,
    or its escape for '"', '\\' and control characters. Control characters without a short
    escape (all but \\b \\f \\n \\r \\t) are left out when the set has other members: a
    grammar may write less than a pattern allows, and `.` alone would otherwise list 30 escapes."""
    ranges = subtract(ranges, [SURROGATES])
    raw = subtract(ranges, _SPECIAL)
    escaped = [json.dumps(chr(cp))[1:-1] for lo, hi in intersect(ranges, _SPECIAL)
               for cp in range(lo, hi + 1)]
    short = [e for e in escaped if not e.startswith("\\u")]
    alts = ([char_class(raw)] if raw else []) + [literal(e) for e in short]
    if not alts:
        alts = [literal(e) for e in escaped]
    if not alts:
        raise ValueError("an empty set of characters")
    return alts[0] if len(alts) == 1 else "( " + " | ".join(alts) + " )"


def json_literal(text: str) -> str:
    """A GBNF literal for `text` as it is written inside a JSON string."""
    return literal(json.dumps(text, ensure_ascii=False)[1:-1])


# ---- size of a finished grammar ---------------------------------------------------------------
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\{(\d+)(?:,(\d*))?\}|[()]|#[^\n]*')


def grammar_size(gbnf: str) -> tuple[int, int]:
    """(size, depth): characters plus the items llama.cpp expands each `{m,n}` into, and the
    deepest parenthesis nesting."""
    size, depth, deepest = len(gbnf), 0, 0
    for m in _TOKEN.finditer(gbnf):
        tok = m.group(0)
        if tok == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif tok == ")":
            depth -= 1
        elif m.group(1) is not None:
            size += max(int(m.group(1)), int(m.group(2) or 0))
    return size, deepest


def check_units(size: int) -> None:
    """Raise GrammarTooLarge when `size` (as grammar_size counts it) is past MAX_GRAMMAR_SIZE."""
    if size > MAX_GRAMMAR_SIZE:
        raise GrammarTooLarge(f"the grammar would be more than {size} units (characters plus "
                              f"expanded repetitions), past the limit of {MAX_GRAMMAR_SIZE}")


def check_size(gbnf: str) -> None:
    """Raise GrammarTooLarge past MAX_GRAMMAR_SIZE or MAX_GRAMMAR_DEPTH."""
    size, depth = grammar_size(gbnf)
    check_units(size)
    if depth > MAX_GRAMMAR_DEPTH:
        raise GrammarTooLarge(f"the grammar would nest {depth} parentheses deep, past the limit "
                              f"of {MAX_GRAMMAR_DEPTH}")
