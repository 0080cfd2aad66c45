"""Turn generated text into message deltas.

The seam where tool-call and reasoning parsers plug in: a parser sees the text so far and
reports what is new, so streaming and non-streaming cannot disagree.
"""

from __future__ import annotations


class PlainTextOutput:
    """Everything the model writes is content."""

    def feed(self, text: str) -> list[dict]:
        return [{"content": text}] if text else []

    def finish(self) -> list[dict]:
        return []

    @property
    def called_tools(self) -> bool:
        return False
