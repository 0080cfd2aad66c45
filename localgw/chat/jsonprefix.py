"""Incremental JSON: how much of a text is a valid JSON value so far, and how to close it.

Tool-call arguments are streamed as raw text fragments. A fragment is only sent up to a point
where the text so far, plus a closing suffix, is valid JSON. So a stream cut short (or a model
that writes broken JSON) still ends in arguments that parse: the closing suffix is appended,
and the streamed fragments are always a prefix of the final string.

A `Scanner` reads one value a character at a time and keeps all it knows between calls: the open
containers, whether it is inside a string, an escape or a number, and the longest prefix that can
be closed so far with its closing suffix. A text that only grows is so read once in all, however
often its scan is asked for (a reply is parsed again after every token). Runs of plain characters
inside a string are read in one step. `scan()` is the one-shot form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WS = " \t\r\n"
_LITERALS = ("true", "false", "null")
_NUM_CHARS = set("0123456789+-.eE")
_HEX = frozenset("0123456789abcdefABCDEF")
_PLAIN = re.compile(r'[^"\\\x00-\x1f]+')  # string characters that need no care


def _number_steps() -> dict[tuple[int, str], int]:
    """The automaton of -?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?, one character a step.

    States: 0 start, 1 after '-', 2 a leading 0, 3 integer digits, 4 after '.', 5 fraction
    digits, 6 after 'e', 7 after the exponent's sign, 8 exponent digits. A pair that is not in
    the table leads to no state: the token can no longer be a number.
    """
    steps = {}
    for d in "0123456789":
        steps.update({(0, d): 2 if d == "0" else 3, (1, d): 2 if d == "0" else 3, (3, d): 3,
                      (4, d): 5, (5, d): 5, (6, d): 8, (7, d): 8, (8, d): 8})
    steps.update({(0, "-"): 1, (2, "."): 4, (3, "."): 4, (6, "+"): 7, (6, "-"): 7})
    for e in "eE":
        steps.update({(2, e): 6, (3, e): 6, (5, e): 6})
    return steps


_NUMBER_STEPS = _number_steps()
_NUMBER_DONE = frozenset((2, 3, 5, 8))


@dataclass
class Scan:
    end: int            # index just past the complete value, or -1 if not complete
    healable: int       # longest prefix length that can be closed into valid JSON
    suffix: str         # what closes text[:healable]
    broken: bool        # the text stops being JSON at some point


class Scanner:
    """One JSON value from `start` on: read as far as the text goes, and on from there later."""

    def __init__(self, start: int = 0):
        self.start = start
        self.pos = start            # characters before this index have been read
        self._stack: list[str] = []  # '{' or '['
        self._closers = ""          # what closes the open containers, innermost first
        self._state = "value"       # value | key | colon | comma
        self._best, self._best_suffix = start, None
        self._in_string = self._escape = self._string_is_key = self._after_comma = False
        self._unicode_left = 0
        self._token = ""            # a number or literal being read (its first 6 characters)
        self._number = 0            # its state in the number automaton (-1: not a number)
        self._result: Scan | None = None  # once the value has ended or broken

    def read(self, text: str, stop: int | None = None) -> Scan:
        """The scan of `text[:stop]`; the part already read must be unchanged and within it."""
        n = len(text) if stop is None else stop
        if self._result is not None:
            return self._result
        if n < self.pos:
            raise ValueError("the text ends before what was already read")
        result, i = self._run(text, n)
        if result is not None:
            self._result, self.pos = result, i + 1
            return result
        self.pos = n
        return Scan(-1, self._best, self._best_suffix or "", False)

    def _run(self, text: str, n: int) -> tuple[Scan | None, int]:
        """Read text[self.pos:n]; (a Scan and the index of the character that decided it) once
        the value ends or breaks, else (None, n) with the state kept for the next call."""
        stack, closers, state = self._stack, self._closers, self._state
        best, best_suffix = self._best, self._best_suffix
        in_string, escape, unicode_left = self._in_string, self._escape, self._unicode_left
        string_is_key, after_comma = self._string_is_key, self._after_comma
        token, number = self._token, self._number
        i = self.pos

        def broken() -> Scan:
            return Scan(-1, best, best_suffix or "", True)

        while i < n:
            c = text[i]
            if in_string:
                if unicode_left:
                    if c not in _HEX:
                        return broken(), i
                    unicode_left -= 1
                elif escape:
                    if c == "u":
                        unicode_left = 4
                    elif c not in '"\\/bfnrt':
                        return broken(), i
                    escape = False
                elif c == "\\":
                    escape = True
                elif c == '"':
                    in_string = False
                    state = "colon" if string_is_key else "comma"
                    if not stack:
                        return Scan(i + 1, i + 1, "", False), i
                elif c < " ":
                    return broken(), i
                else:  # plain characters: take the whole run at once
                    i = _PLAIN.match(text, i, n).end()
                    best, best_suffix = i, ('": null' if string_is_key else '"') + closers
                    continue
                i += 1
                if in_string and not escape and not unicode_left:
                    best, best_suffix = i, ('": null' if string_is_key else '"') + closers
                elif not in_string:
                    best, best_suffix = i, ("" if state == "comma" else ": null") + closers
                continue
            if token:
                if c in _NUM_CHARS or c.isalpha():
                    if len(token) < 6:
                        token += c
                    number = _NUMBER_STEPS.get((number, c), -1)
                    i += 1
                    if token in _LITERALS or number in _NUMBER_DONE:
                        best, best_suffix = i, closers
                    continue
                if not (token in _LITERALS or number in _NUMBER_DONE):
                    return broken(), i
                token, state = "", "comma"
                if not stack:
                    return Scan(i, i, "", False), i
                continue
            if c in _WS:
                i += 1
                continue
            closes = False
            if state == "value":
                closes = c == "]" and bool(stack) and stack[-1] == "[" and not after_comma
                after_comma = False
                if not closes:
                    if c in "{[":
                        stack.append(c)
                        closers = ("}" if c == "{" else "]") + closers
                        state = "key" if c == "{" else "value"
                        i += 1
                        best, best_suffix = i, closers
                    elif c == '"':
                        in_string, string_is_key = True, False
                        i += 1
                        best, best_suffix = i, '"' + closers
                    elif c in "-0123456789" or c in "tfn":
                        token, number = c, _NUMBER_STEPS.get((0, c), -1)
                        i += 1
                        if token in _LITERALS or number in _NUMBER_DONE:
                            best, best_suffix = i, closers
                    else:
                        return broken(), i
                    continue
            elif state == "key":
                if c == '"':
                    after_comma = False
                    in_string, string_is_key = True, True
                    i += 1
                    continue
                closes = c == "}" and bool(stack) and stack[-1] == "{" and not after_comma
            elif state == "colon":
                if c == ":":
                    state = "value"
                    i += 1
                    continue
            elif c == ",":  # state == "comma"
                state = "key" if stack[-1] == "{" else "value"
                after_comma = True
                i += 1
                continue
            else:
                closes = (c == "}" and stack[-1] == "{") or (c == "]" and stack[-1] == "[")
            if not closes:
                return broken(), i
            stack.pop()
            closers = closers[1:]
            state = "comma"
            if not stack:
                return Scan(i + 1, i + 1, "", False), i
            i += 1
            best, best_suffix = i, closers
        self._closers, self._state = closers, state
        self._best, self._best_suffix = best, best_suffix
        self._in_string, self._escape, self._unicode_left = in_string, escape, unicode_left
        self._string_is_key, self._after_comma = string_is_key, after_comma
        self._token, self._number = token, number
        return None, n


def scan(text: str, start: int = 0) -> Scan:
    """Scan one JSON value starting at `start` (leading whitespace allowed)."""
    return Scanner(start).read(text)
