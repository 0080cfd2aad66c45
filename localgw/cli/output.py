"""Printing helpers: JSON for scripts, Rich tables for people."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def human_size(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def human_count(n: int | None) -> str:
    if not n:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


# A column other than the kept one is shown only if it gets at least this many characters.
_MIN_COLUMN = 8
_GAP = 2  # between columns (box=None: one space of padding on each side)


def table(columns: list[str], rows: list[list[str]], keep: int | None = None,
          whole: tuple[int, ...] = ()) -> None:
    """A table for people. Column `keep` (the id people copy into the next command) is never cut
    or wrapped. Columns in `whole` (other names people copy) are shown unbroken or not at all;
    the rest wrap. When the terminal is too narrow even so, columns are left out: `whole` ones
    first, then the rest, rightmost first (`--json` always has everything)."""
    shown = list(range(len(columns)))
    unbroken = {keep, *whole} if keep is not None else set()

    def need(i: int) -> int:
        return max(len(c) for c in [columns[i], *(r[i] for r in rows)])

    def least(i: int) -> int:  # what a column must get to be shown at all
        return need(i) if i in unbroken else min(need(i), max(len(columns[i]), _MIN_COLUMN))

    if keep is not None:
        while len(shown) > 1 and sum(map(least, shown)) + _GAP * (len(shown) - 1) > stdout.width:
            droppable = [i for i in shown if i in whole] or [i for i in shown if i != keep]
            shown.remove(droppable[-1])
    t = Table(box=None, pad_edge=False, header_style="bold",
              width=need(keep) if keep is not None and need(keep) > stdout.width else None)
    for i in shown:
        if i in unbroken:
            t.add_column(columns[i], no_wrap=True, min_width=need(i))
        else:
            t.add_column(columns[i], overflow="fold" if keep is not None else "ellipsis")
    for row in rows:
        t.add_row(*(row[i] for i in shown))
    stdout.print(t)
