"""MessageParser's plain-text path gives what the general parse gives."""

from __future__ import annotations

import random

from localgw.chat.formats import chat_format
from localgw.chat.output import MessageParser
from tests.helpers import openai_deltas


def _deltas(parser: MessageParser, pieces: list[str]) -> list[dict]:
    out = []
    for piece in pieces:
        out += parser.feed(piece)
    return openai_deltas(out + parser.finish())


def test_plain_text_deltas_are_the_pieces_and_match_the_general_parse():
    fmt = chat_format("{% for m in messages %}{{ m['content'] }}{% endfor %}")  # nothing to parse
    rng = random.Random(3)
    pieces = [rng.choice(["Hello", " world", "", "  ", "\\n", "{", "}", " <think>", "é"]) for _ in range(300)]
    fast = MessageParser(fmt)
    assert not fast.parse_reasoning and not fast.parse_tools
    got = _deltas(fast, pieces)
    assert got == [{"content": p} for p in pieces if p]

    general = MessageParser(fmt)
    deltas = []
    for piece in pieces:  # what feed did before its plain-text path: the general parse
        if piece:
            general.text += piece
            deltas += general._diff(final=False)
    assert openai_deltas(deltas + general.finish()) == got
