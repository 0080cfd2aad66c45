"""What parsing a growing text has learned, kept for the next parse of the longer text.

A reply is parsed again after every token (output.MessageParser). Within one reply the text only
grows, so what a parse found in it stays true when it grows: where a marker first occurs at or
after a position (or that it does not occur up to the end so far), how far a run of whitespace
from a position goes, how a JSON value starting at a position reads, and the state of a parser's
loop after each item it finished, whose end it has seen (a mark). A `ParseMemo` keeps these for one growing text, so the next parse reads only what
is new. Parsers take a memo as an argument and make a fresh one when none is given: with or
without a kept memo they run the same code, and a kept one only saves work.
"""

from __future__ import annotations

import re
from typing import Any

from localgw.chat.jsonprefix import Scan, Scanner


class ParseMemo:
    """Marker searches, runs, JSON scans and a parser's last mark, for one text that only grows."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, int], tuple[int, int]] = {}  # → (index or -1, length seen)
        self._runs: dict[tuple[re.Pattern, int], int] = {}       # → where the run got to
        self._scanners: dict[int, Scanner] = {}
        self._cut_scans: dict[tuple[int, int], Scan] = {}
        self._mark: tuple[str, int, tuple, tuple] | None = None
        self.notes: dict[Any, Any] = {}  # a parser's own findings, keyed by what it looked at

    def find(self, text: str, marker: str, start: int = 0, stop: int | None = None) -> int:
        """`text.find(marker, start, stop)`, searching only the part not searched before."""
        at, seen = self._found.get((marker, start), (-1, start))
        if at < 0 and seen < len(text):
            at = text.find(marker, max(start, seen - len(marker) + 1))
            self._found[(marker, start)] = (at, len(text))
        if at >= 0 and stop is not None and at + len(marker) > stop:
            return -1
        return at

    def skip(self, run: re.Pattern, text: str, pos: int, stop: int | None = None) -> int:
        """The index after the run at text[pos:stop] of `run`, a pattern like `[ \\t]*`."""
        stop = len(text) if stop is None else stop
        if pos >= stop:
            return pos
        end = self._runs.get((run, pos), pos)
        if end >= stop:  # what the run covered before reaches the stop
            return stop
        end = self._runs[(run, pos)] = run.match(text, end, stop).end()
        return end

    def scan(self, text: str, start: int, stop: int | None = None) -> Scan:
        """`jsonprefix.scan(text[:stop], start)`, reading only the part not read before."""
        stop = len(text) if stop is None else stop
        scanner = self._scanners.get(start)
        if scanner is None:
            scanner = self._scanners[start] = Scanner(start)
        if scanner.pos <= stop:
            return scanner.read(text, stop)
        # a block ended inside what was read (a closing tag inside a string): scan it once as cut
        if (start, stop) not in self._cut_scans:
            self._cut_scans[(start, stop)] = Scanner(start).read(text, stop)
        return self._cut_scans[(start, stop)]

    def mark(self, parser: str, pos: int, calls: list, *state: Any) -> None:
        """Record a parser's loop after an item that the rest of the text cannot change."""
        self._mark = (parser, pos, tuple(calls), state)

    def resume(self, parser: str) -> tuple[int, list, tuple] | None:
        """The last mark of `parser`: (position, calls so far, the rest of its state)."""
        if self._mark is None or self._mark[0] != parser:
            return None
        _, pos, calls, state = self._mark
        return pos, list(calls), state

    @property
    def settled(self) -> int:
        """How many leading calls of every parse from now on are the ones in the last mark."""
        return len(self._mark[2]) if self._mark else 0
