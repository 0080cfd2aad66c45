"""A JSON schema `pattern` (a regular expression) → a GBNF expression for the JSON string's body.

The regex is parsed by Python's own parser (`re`'s internal `_parser`, `sre_parse` before 3.11)
and written out with JSON semantics: every character the regex matches is emitted as it appears
inside a JSON string ('"' as `\\"`, a newline as `\\n`), and `\\d`, `\\w`, `\\s` are ECMA-262's
ASCII classes. JSON schema patterns are unanchored: without `^` the match is written at the start
of the string, without `$` any characters may follow it (every output still matches).

Limits, each a reason `PatternError` gives:
- nesting at most MAX_PATTERN_DEPTH groups deep, at most MAX_PATTERN_CHARS characters;
- counts `{m,n}` at most gbnf.MAX_REPEAT;
- a group whose length varies (`(a|bc)`, `([a-z]+)`, `(x?)`) repeated a bounded number of times
  at most MAX_VARYING_REPEAT times, bounds of nested such groups multiplied: llama.cpp follows
  every split of the text into repetitions at once, one parse stack each, and each stack costs
  about as much per sampled token as a whole unconstrained string does. (A group of one fixed
  length, `[0-9]{5}` or `(ab|cd){1000}`, has one split only.)
- no lookarounds, backreferences, word boundaries, possessive or atomic groups, inline flags.
Groups become rules, so the GBNF never nests (see gbnf.py).
"""

from __future__ import annotations

try:  # Python 3.11+
    from re import _constants as sre
    from re import _parser as sre_parse
except ImportError:  # Python 3.10
    import sre_constants as sre  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]
import re

from localgw.chat import gbnf

MAX_PATTERN_CHARS = 10_000
MAX_PATTERN_DEPTH = 32
MAX_VARYING_REPEAT = 32

_LINE_TERMINATORS = [(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)]  # what ECMA's `.` never matches
_DIGIT = [(0x30, 0x39)]
_WORD = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
          (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)]
_CATEGORIES = {
    sre.CATEGORY_DIGIT: _DIGIT, sre.CATEGORY_NOT_DIGIT: gbnf.complement(_DIGIT),
    sre.CATEGORY_WORD: _WORD, sre.CATEGORY_NOT_WORD: gbnf.complement(_WORD),
    sre.CATEGORY_SPACE: _SPACE, sre.CATEGORY_NOT_SPACE: gbnf.complement(_SPACE),
}
_BEGIN = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)
_END = (sre.AT_END, sre.AT_END_STRING)
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)  # greedy or lazy: the same set of strings
_ONE_CHAR = (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN)
_SYMBOL = re.compile(r"[a-zA-Z0-9-]+")  # a rule name
_OPEN, _CLOSED = "open", "closed"  # the end of the pattern: anything may follow, or nothing


class PatternError(ValueError):
    """A pattern the grammar cannot hold; the message says why."""


def _depth(pattern: str) -> int:
    """Group nesting, read without the regex parser (which recurses once per level)."""
    depth = deepest = 0
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 1
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth -= 1
        i += 1
    return deepest


def parse(pattern: str):
    """Python's parse of `pattern`, within the size and depth limits."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"a pattern of {len(pattern)} characters (limit {MAX_PATTERN_CHARS})")
    if _depth(pattern) > MAX_PATTERN_DEPTH:
        raise PatternError(f"groups nested {_depth(pattern)} deep (limit {MAX_PATTERN_DEPTH})")
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise PatternError(f"invalid regex ({exc})") from None
    except RecursionError:
        raise PatternError(f"groups nested too deeply (limit {MAX_PATTERN_DEPTH})") from None
    if parsed.state.flags & ~sre.SRE_FLAG_UNICODE:
        raise PatternError("inline flags such as (?i) are not supported")
    return parsed


def _length(items) -> tuple[int, int | None]:
    """The fewest and most characters `items` match (None: no most)."""
    lo, hi = 0, 0
    for op, av in items:
        if op in _ONE_CHAR:
            a, b = 1, 1
        elif op is sre.BRANCH:
            spans = [_length(alt) for alt in av[1]]
            a = min(s[0] for s in spans)
            b = None if any(s[1] is None for s in spans) else max(s[1] for s in spans)
        elif op is sre.SUBPATTERN:
            a, b = _length(av[3])
        elif op in _REPEATS:
            n_lo, n_hi, sub = av
            s_lo, s_hi = _length(sub)
            a = n_lo * s_lo
            unbounded = s_hi is None or n_hi is sre.MAXREPEAT
            b = 0 if s_hi == 0 or n_hi == 0 else None if unbounded else n_hi * s_hi
        else:
            a, b = 0, 0
        lo, hi = lo + a, None if hi is None or b is None else hi + b
    return lo, hi


class _Writer:
    def __init__(self, rule: gbnf.Rule):
        self.rule = rule
        self.width = 1  # product of the bounds of enclosing repetitions of varying groups

    def top(self, parsed) -> str:
        return self.seq(list(parsed), True, _OPEN)

    def seq(self, items, first: bool, tail: str | None) -> str:
        """`items` in a row; `first`: nothing precedes them; `tail`: what the pattern's end
        allows after them (None: they are not at its end)."""
        body = [i for i, (op, av) in enumerate(items)
                if not (op is sre.AT and (av in _BEGIN or av in _END))]
        last = body[-1] if body else -1
        if tail is not None and any(items[i][1] in _END for i in range(last + 1, len(items))):
            tail = _CLOSED
        parts, text = [], ""
        for i, (op, av) in enumerate(items):
            if op is sre.AT:
                self.anchor(av, first and i < (body[0] if body else len(items)),
                            tail is not None and i > last)
                continue
            if op is sre.LITERAL:
                text += chr(av)
                continue
            if text:
                parts.append(gbnf.json_literal(text))
                text = ""
            is_first, is_tail = first and i == body[0], tail if i == last else None
            parts.append(self.item(op, av, is_first, is_tail))
        if text:
            parts.append(gbnf.json_literal(text))
        last_is_group = last >= 0 and items[last][0] in (sre.BRANCH, sre.SUBPATTERN)
        if tail == _OPEN and not last_is_group:
            parts.append(f"{self.rule(gbnf.json_chars([(0, gbnf.MAX_CODE_POINT)]))}*")
        return " ".join(parts) or '""'

    @staticmethod
    def anchor(av, may_begin: bool, may_end: bool) -> None:
        if not ((av in _BEGIN and may_begin) or (av in _END and may_end)):
            raise PatternError("^ and $ are supported only at the pattern's start and end; "
                               "\\b and \\B are not supported")

    def item(self, op, av, first: bool = False, tail: str | None = None) -> str:
        if op is sre.NOT_LITERAL:
            return gbnf.json_chars(gbnf.complement([(av, av)]))
        if op is sre.ANY:
            return gbnf.json_chars(gbnf.complement(_LINE_TERMINATORS))
        if op is sre.IN:
            return gbnf.json_chars(self.char_set(av))
        if op is sre.LITERAL:
            return gbnf.json_literal(chr(av))
        if op is sre.BRANCH:
            return self.rule(" | ".join(self.seq(alt, first, tail) for alt in av[1]))
        if op is sre.SUBPATTERN:
            if av[1] or av[2]:
                raise PatternError("inline flags such as (?i:...) are not supported")
            return self.seq(av[3], first, tail)
        if op in _REPEATS:
            return self.repeat(*av)
        raise PatternError(f"{str(op).lower().replace('_', ' ')} is not supported "
                           "(lookarounds, backreferences, possessive and atomic groups)")

    def char_set(self, items) -> list[tuple[int, int]]:
        ranges, negate = [], False
        for op, av in items:
            if op is sre.NEGATE:
                negate = True
            elif op is sre.LITERAL:
                ranges.append((av, av))
            elif op is sre.RANGE:
                ranges.append(av)
            elif op is sre.CATEGORY and av in _CATEGORIES:
                ranges += _CATEGORIES[av]
            else:
                raise PatternError(f"{av} in a character class is not supported")
        return gbnf.complement(ranges) if negate else gbnf.normalize(ranges)

    def repeat(self, lo: int, hi, sub) -> str:
        hi = None if hi is sre.MAXREPEAT else hi
        if max(lo, hi or 0) > gbnf.MAX_REPEAT:
            raise PatternError(f"a count of {max(lo, hi or 0)} (limit {gbnf.MAX_REPEAT})")
        s_lo, s_hi = _length(sub)
        varying = not (s_lo == s_hi and s_lo > 0)
        outer = self.width
        if varying and hi is not None and hi > 1:
            self.width *= hi
            if self.width > MAX_VARYING_REPEAT:
                raise PatternError(
                    f"a group whose length varies, repeated up to {self.width} times (nested "
                    f"bounds multiplied; limit {MAX_VARYING_REPEAT}); repeat it with * or + or "
                    f"give it one length")
        try:
            one = len(sub) == 1 and sub[0][0] in _ONE_CHAR
            inner = self.item(*sub[0]) if one else self.seq(sub, False, None)
        finally:
            self.width = outer
        if not (_SYMBOL.fullmatch(inner) or inner.startswith(("[", '"')) and " " not in inner):
            inner = self.rule(inner)  # repeat one symbol: llama.cpp copies it, never nests it
        return gbnf.repeat(inner, lo, hi, self.rule)


def pattern_grammar(pattern: str, rule: gbnf.Rule) -> str:
    """A GBNF expression for the body of a JSON string matching `pattern` (between its quotes).
    `rule` adds a helper rule and returns its name. Raises PatternError."""
    return _Writer(rule).top(parse(pattern))


def pattern_problem(pattern) -> str | None:
    """Why `pattern` cannot be enforced, or None when it can."""
    if not isinstance(pattern, str):
        return "a pattern must be a string"
    count = iter(range(1 << 62))
    try:
        pattern_grammar(pattern, lambda body: f"r{next(count)}")
    except PatternError as exc:
        return str(exc)
    return None
