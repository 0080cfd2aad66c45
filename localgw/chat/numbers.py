"""Bounds on JSON schema integers and numbers, as GBNF digit-range alternatives (pure).

Integers are written with at most MAX_INTEGER_DIGITS digits, the converter's own unbounded
`integer` (`integral-part`), so a bound past ±(10^16 - 1) binds nothing and is dropped. Bounded
numbers are exponent-free decimals of at most MAX_DIGITS digits in all (see below), so a bound
past ±10^15 binds nothing either. Either way the grammar's size depends on the digit counts, never
on a bound's magnitude: `maximum: 1e308` allows what no maximum allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

MAX_INTEGER_DIGITS = 16
_INT_LIMIT = 10 ** MAX_INTEGER_DIGITS - 1


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
    s = (hi + 1) - (hi + 1) % 10 ** k - 1
    while lo < s <= hi:  # s == hi (hi + 1 ends in zeros) continues: 539 still needs 499
        stops.add(s)
        k += 1
        s = (hi + 1) - (hi + 1) % 10 ** k - 1
    out, start = [], lo
    for stop in sorted(stops):
        out.append((start, stop))
        start = stop + 1
    return out


def _nonneg_range(lo: int, hi: int) -> list[str]:
    alts = []
    if lo <= hi:
        for a, b in _split(lo, hi):
            sa, sb = str(a), str(b)
            if len(sa) < len(sb):  # only when a == 0-ish boundaries; pad by splitting further
                for x, y in _split(a, b):
                    alts.append(_digit_pattern(str(x), str(y)))
            else:
                alts.append(_digit_pattern(sa, sb))
    return alts


def int_range(lo: int | None, hi: int | None) -> str:
    """A GBNF expression for the integers in [lo, hi] of at most MAX_INTEGER_DIGITS digits
    (None: unbounded). Raises ValueError when there is none."""
    lo = -_INT_LIMIT if lo is None else max(lo, -_INT_LIMIT)
    hi = _INT_LIMIT if hi is None else min(hi, _INT_LIMIT)
    alts = []
    if lo < 0:  # negative part: -[max(1, -hi), -lo]
        neg_lo = 1 if hi >= 0 else -hi
        if neg_lo <= -lo:
            alts += [f'"-" ( {p} )' for p in _nonneg_range(neg_lo, -lo)]
    if hi >= 0:
        alts += _nonneg_range(max(lo, 0), hi)
    if not alts:
        raise ValueError(f"empty integer range [{lo}, {hi}]")
    return "( " + " | ".join(f"( {a} )" for a in alts) + " )"


# ---- number bounds ------------------------------------------------------------------------
# A bounded `number` is written without an exponent: an optional "-", an integer part without
# leading zeros, an optional fraction. It has at most MAX_DIGITS digits in all, which is what a
# double holds exactly: two different decimals of ≤ 15 significant digits are two different
# doubles, in the same order, so a value that is in range as a decimal is still in range after a
# client's JSON parser reads it as a double (39.999999999999999 would be read as 40.0, past an
# exclusiveMaximum of 40). Negative zero ("-0", "-0.0") is never written.
MAX_DIGITS = 15


@dataclass(frozen=True)
class _Bound:
    """A bound on a fraction 0.d: its digits (no trailing zeros; "" is 0), and whether strict."""
    digits: str
    strict: bool


def _fraction(lo: _Bound | None, hi: _Bound | None, room: int) -> tuple[bool, str | None]:
    """The digit strings d of length 0..room with lo ≤ 0.d ≤ hi (< for strict bounds), as
    (whether the empty string is in, a GBNF expression for the non-empty ones or None)."""
    if lo is not None and not lo.digits and not lo.strict:
        lo = None  # 0.d ≥ 0 always
    if hi is not None and not hi.digits and hi.strict:
        return False, None  # 0.d < 0 never
    if lo is None and hi is not None and not hi.digits:  # 0.d ≤ 0: zeros only
        return True, (f'"0"{{1,{room}}}' if room else None)
    empty_in = lo is None  # 0 ≥ a bound above 0, or > 0, fails; 0 ≤ any upper bound here holds
    if room == 0:
        return empty_in, None
    lo_d = (lo.digits or "0")[0] if lo else None
    hi_d = (hi.digits or "0")[0] if hi else None
    alts = []
    free_from = "0" if lo_d is None else chr(ord(lo_d) + 1)
    free_to = "9" if hi_d is None else chr(ord(hi_d) - 1)
    tail = f" [0-9]{{0,{room - 1}}}" if room > 1 else ""
    if free_from <= free_to:  # digits that settle both bounds: anything may follow
        alts.append(f"[{free_from}-{free_to}]{tail}")
    for digit in sorted({d for d in (lo_d, hi_d) if d is not None}):
        if (lo_d is not None and digit < lo_d) or (hi_d is not None and digit > hi_d):
            continue
        rest_lo = _Bound(lo.digits[1:], lo.strict) if digit == lo_d else None
        rest_hi = _Bound(hi.digits[1:], hi.strict) if digit == hi_d else None
        empty, more = _fraction(rest_lo, rest_hi, room - 1)
        if empty and more:
            alts.append(f'"{digit}" ( {more} )?')
        elif empty:
            alts.append(f'"{digit}"')
        elif more:
            alts.append(f'"{digit}" ( {more} )')
    return empty_in, (" | ".join(f"( {a} )" for a in alts) if alts else None)


def _int_spans(lo: int, hi: int) -> list[tuple[str, int]]:
    """The integers in [lo, hi] (0 ≤ lo) as (digit pattern, its length in digits)."""
    out = []
    for length in range(len(str(lo)), len(str(hi)) + 1):
        a, b = max(lo, 10 ** (length - 1) if length > 1 else 0), min(hi, 10 ** length - 1)
        if a <= b:
            out += [(_digit_pattern(str(x), str(y)), length) for x, y in _split(a, b)]
    return out


def _split_decimal(x: Decimal) -> tuple[int, str]:
    """A non-negative decimal as (integer part, fraction digits without trailing zeros)."""
    whole = int(x)
    frac = format(x - whole, "f").partition(".")[2].rstrip("0")
    return whole, frac


def _magnitudes(lo: Decimal, lo_strict: bool, hi: Decimal | None, hi_strict: bool) -> list[str]:
    """GBNF alternatives for the non-negative decimals in the range lo..hi (hi None: any)."""
    lo_int, lo_frac = _split_decimal(lo)
    top = 10 ** MAX_DIGITS - 1
    pieces: list[tuple[str, int, _Bound | None, _Bound | None]] = []
    if hi is not None:
        hi_int, hi_frac = _split_decimal(hi)
        if hi_int == lo_int:
            pieces.append((_digit_pattern(str(lo_int), str(lo_int)), len(str(lo_int)), _Bound(lo_frac, lo_strict), _Bound(hi_frac, hi_strict)))
        else:
            pieces.append((_digit_pattern(str(lo_int), str(lo_int)), len(str(lo_int)),
                           _Bound(lo_frac, lo_strict), None))
            pieces += [(p, n, None, None) for p, n in _int_spans(lo_int + 1, hi_int - 1)]
            pieces.append((_digit_pattern(str(hi_int), str(hi_int)), len(str(hi_int)),
                           None, _Bound(hi_frac, hi_strict)))
    else:
        pieces.append((_digit_pattern(str(lo_int), str(lo_int)), len(str(lo_int)),
                       _Bound(lo_frac, lo_strict), None))
        if lo_int < top:
            pieces += [(p, n, None, None) for p, n in _int_spans(lo_int + 1, top)]
    alts = []
    for pattern, length, frac_lo, frac_hi in pieces:
        empty, more = _fraction(frac_lo, frac_hi, max(0, MAX_DIGITS - length))
        if more:
            alts.append(f'{pattern} ( "." ( {more} ) )' + ("?" if empty else ""))
        elif empty:
            alts.append(pattern)
    return alts


def _decimal(x) -> Decimal:
    # repr: the shortest decimal that reads back as the same double (0.1, not 0.1000000000000000055…)
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


def number_range(lo=None, hi=None, lo_exclusive: bool = False, hi_exclusive: bool = False) -> str:
    """A GBNF expression for the exponent-free decimals x with lo ≤ x ≤ hi (< for an exclusive
    bound; None: unbounded), at most MAX_DIGITS digits, without negative zero.

    Built like int_range: the sign splits the range into magnitudes; a magnitude is an integer
    part (the bounds' own integer parts, then digit ranges between them) and a fraction whose
    digits are compared with the bound's digits one at a time (`_fraction`). Raises ValueError
    when nothing can be written in the range.
    """
    lo_d = None if lo is None else _decimal(lo)
    hi_d = None if hi is None else _decimal(hi)
    reach = Decimal(10) ** MAX_DIGITS  # every value written lies strictly within ±reach
    lo_d = None if lo_d is not None and lo_d <= -reach else lo_d
    hi_d = None if hi_d is not None and hi_d >= reach else hi_d
    beyond = (lo_d is not None and lo_d >= reach) or (hi_d is not None and hi_d <= -reach)
    alts = []
    if not beyond and (lo_d is None or lo_d < 0):  # negative: the magnitude is in [max(0, -hi), -lo]
        if hi_d is not None and hi_d < 0:
            mag_lo, mag_lo_strict = -hi_d, hi_exclusive
        else:
            mag_lo, mag_lo_strict = Decimal(0), True  # no negative zero
        mag_hi = None if lo_d is None else -lo_d
        if mag_hi is None or mag_lo < mag_hi or (mag_lo == mag_hi and not (mag_lo_strict or lo_exclusive)):
            alts += [f'"-" ( {a} )' for a in _magnitudes(mag_lo, mag_lo_strict, mag_hi, lo_exclusive)]
    if not beyond and (hi_d is None or hi_d >= 0):  # non-negative part: [max(lo, 0), hi]
        if lo_d is not None and lo_d >= 0:
            pos_lo, pos_lo_strict = lo_d, lo_exclusive
        else:
            pos_lo, pos_lo_strict = Decimal(0), False
        if hi_d is None or pos_lo < hi_d or (pos_lo == hi_d and not (pos_lo_strict or hi_exclusive)):
            alts += _magnitudes(pos_lo, pos_lo_strict, hi_d, hi_exclusive)
    if not alts:
        low = "(-inf" if lo is None else f"{'(' if lo_exclusive else '['}{lo}"
        high = "+inf)" if hi is None else f"{hi}{')' if hi_exclusive else ']'}"
        raise ValueError(f"no decimal of at most {MAX_DIGITS} digits lies in the range {low}, {high}")
    return "( " + " | ".join(f"( {a} )" for a in alts) + " )"


def number_bounds(schema: dict) -> tuple:
    """A number schema's bounds as number_range's (lo, hi, lo_exclusive, hi_exclusive): the
    tighter of minimum and exclusiveMinimum (and of the maxima) wins, the exclusive one at a tie."""
    lo, lo_x, hi, hi_x = schema.get("minimum"), False, schema.get("maximum"), False
    if "exclusiveMinimum" in schema and (lo is None or schema["exclusiveMinimum"] >= lo):
        lo, lo_x = schema["exclusiveMinimum"], True
    if "exclusiveMaximum" in schema and (hi is None or schema["exclusiveMaximum"] <= hi):
        hi, hi_x = schema["exclusiveMaximum"], True
    return lo, hi, lo_x, hi_x


def integer_bounds(schema: dict) -> tuple[int | None, int | None]:
    """The first and last integer an integer schema's bounds allow (None: unbounded)."""
    lo, hi, lo_x, hi_x = number_bounds(schema)
    first = None if lo is None else math.floor(lo) + 1 if lo_x or lo != math.floor(lo) else int(lo)
    last = None if hi is None else math.ceil(hi) - 1 if hi_x or hi != math.ceil(hi) else int(hi)
    return first, last
