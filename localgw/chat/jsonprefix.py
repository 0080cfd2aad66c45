"""Incremental JSON: how much of a text is a valid JSON value so far, and how to close it.

Tool-call arguments are streamed as raw text fragments. A fragment is only sent up to a point
where the text so far, plus a closing suffix, is valid JSON. So a stream cut short (or a model
that writes broken JSON) still ends in arguments that parse: the closing suffix is appended,
and the streamed fragments are always a prefix of the final string.
"""

from __future__ import annotations

from dataclasses import dataclass

_WS = " \t\r\n"
_LITERALS = ("true", "false", "null")
_NUM_CHARS = set("0123456789+-.eE")


@dataclass
class Scan:
    end: int            # index just past the complete value, or -1 if not complete
    healable: int       # longest prefix length that can be closed into valid JSON
    suffix: str         # what closes text[:healable]
    broken: bool        # the text stops being JSON at some point


def _number_ok(tok: str) -> bool:
    import re
    return re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?", tok) is not None


def scan(text: str, start: int = 0) -> Scan:
    """Scan one JSON value starting at `start` (leading whitespace allowed)."""
    stack: list[str] = []          # '{' or '['
    state = "value"                # value | key | colon | comma | done
    i, n = start, len(text)
    best, best_suffix = start, None
    in_string = False
    escape = False
    unicode_left = 0
    string_is_key = False
    token = ""                     # a number or literal being read
    after_comma = False            # in an object, a key must follow

    def closing(extra: str = "") -> str:
        return extra + "".join("}" if c == "{" else "]" for c in reversed(stack))

    def close_container() -> Scan | None:
        """Pop the innermost container just closed; a Scan when that ends the value."""
        nonlocal i, state, best, best_suffix
        stack.pop()
        i += 1
        state = "comma"
        if not stack:
            return Scan(i, i, "", False)
        best, best_suffix = i, closing()
        return None

    def finish_token() -> bool:
        nonlocal token
        ok = token in _LITERALS or _number_ok(token)
        token = ""
        return ok

    while i < n:
        c = text[i]
        if in_string:
            if unicode_left:
                if c not in "0123456789abcdefABCDEF":
                    return Scan(-1, best, best_suffix or "", True)
                unicode_left -= 1
            elif escape:
                if c == "u":
                    unicode_left = 4
                elif c not in '"\\/bfnrt':
                    return Scan(-1, best, best_suffix or "", True)
                escape = False
            elif c == "\\":
                escape = True
            elif c == '"':
                in_string = False
                state = "colon" if string_is_key else "comma"
                if not stack:
                    return Scan(i + 1, i + 1, "", False)
            elif c < " ":
                return Scan(-1, best, best_suffix or "", True)
            i += 1
            if in_string and not escape and not unicode_left:
                best, best_suffix = i, closing('"' if not string_is_key else '": null')
                if string_is_key:
                    best, best_suffix = best, closing('": null')
            elif not in_string:
                best, best_suffix = i, closing("" if state == "comma" else ": null")
            continue
        if token:
            if c in _NUM_CHARS or c.isalpha():
                token += c
                i += 1
                if token in _LITERALS or _number_ok(token):
                    best, best_suffix = i, closing()
                continue
            if not finish_token():
                return Scan(-1, best, best_suffix or "", True)
            state = "comma"
            if not stack:
                return Scan(i, i, "", False)
            continue
        if c in _WS:
            i += 1
            continue
        if state == "value":
            closes_empty = c == "]" and stack and stack[-1] == "[" and not after_comma
            after_comma = False
            if closes_empty:
                if (done := close_container()) is not None:
                    return done
                continue
            if c == "{":
                stack.append("{")
                state = "key"
            elif c == "[":
                stack.append("[")
                state = "value"
                i += 1
                best, best_suffix = i, closing()
                continue
            elif c == '"':
                in_string, string_is_key = True, False
                i += 1
                best, best_suffix = i, closing('"')
                continue
            elif c in "-0123456789" or c in "tfn":
                token = c
                i += 1
                if token in _LITERALS or _number_ok(token):
                    best, best_suffix = i, closing()
                continue
            else:
                return Scan(-1, best, best_suffix or "", True)
            i += 1
            best, best_suffix = i, closing()
            continue
        if state == "key":
            if c == '"':
                after_comma = False
                in_string, string_is_key = True, True
                i += 1
                continue
            if c == "}" and stack and stack[-1] == "{" and not after_comma:
                if (done := close_container()) is not None:
                    return done
                continue
            return Scan(-1, best, best_suffix or "", True)
        if state == "colon":
            if c == ":":
                state = "value"
                i += 1
                continue
            return Scan(-1, best, best_suffix or "", True)
        if state == "comma":
            if c == ",":
                state = "key" if stack[-1] == "{" else "value"
                after_comma = True
                i += 1
                continue
            if (c == "}" and stack[-1] == "{") or (c == "]" and stack[-1] == "["):
                if (done := close_container()) is not None:
                    return done
                continue
            return Scan(-1, best, best_suffix or "", True)
    if token and not stack and (token in _LITERALS or _number_ok(token)):
        # a bare number at the very end may still grow: complete only when the caller says so
        return Scan(-1, best, best_suffix or "", False)
    if best_suffix is None:
        best_suffix = ""
    return Scan(-1, best, best_suffix, False)
