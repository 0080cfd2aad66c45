"""Keep-alive durations as users write them: `5m`, `30s`, `1h30m`, `0`, `-1` (forever), seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value) -> float | None:
    """Seconds, or None for "never expire" (any negative value). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(value, (int, float)):
        return None if value < 0 else float(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"-\d+(\.\d+)?[a-z]*", text):
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _PART.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"{value!r} is not a duration (try 30s, 5m, 1h, 0 or -1)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def describe(seconds: float | None) -> str:
    if seconds is None:
        return "forever"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?")
_SIZE_UNIT = {None: 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 2 ** 20, "mb": 10 ** 6,
              "mib": 2 ** 20, "g": 2 ** 30, "gb": 10 ** 9, "gib": 2 ** 30, "t": 2 ** 40,
              "tb": 10 ** 12, "tib": 2 ** 40}


def parse_size(value) -> int:
    """Bytes from `2GiB`, `512MiB`, `1.5G`, `0` or a plain number. Raises ValueError."""
    text = str(value).strip().lower()
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"{value!r} is not a size (try 2GiB, 512MiB or 0)")
    return int(float(match.group(1)) * _SIZE_UNIT[match.group(2)])
