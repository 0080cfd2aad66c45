"""Stop sequences that may span token boundaries: hold back text that could start one."""

from __future__ import annotations


class StopMatcher:
    """Feed decoded text piece by piece; get back what is safe to emit and whether to stop.

    Text that is a prefix of some stop string is held back until the next piece decides it, so
    a stop string never reaches the client, however the tokenizer splits it.
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def feed(self, text: str) -> str:
        """Emit-ready text after adding `text`; sets `stopped` when a stop string completed."""
        if not self.stops:
            return text
        buf = self._held + text
        found = [(i, s) for s in self.stops if (i := buf.find(s)) >= 0]
        if found:
            cut, self.matched = min(found, key=lambda f: f[0])
            self._held = ""
            self.stopped = True
            return buf[:cut]
        keep = self._partial_len(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        """The held-back text, once generation ended without completing a stop string."""
        held, self._held = self._held, ""
        return held

    def _partial_len(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best
