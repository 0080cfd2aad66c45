"""ChatCall: a request running somewhere (a local model or an upstream), as routes see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from localgw.chat.responses import Usage


@dataclass
class ChatCall:
    """A chat (or text) completion running on a model, as every front door sees it.

    `chunks` yields OpenAI `chat.completion.chunk` dicts (the internal event stream every wire
    format translates from), or `text_completion` ones for a text completion; `close()` stops
    the work and frees the model, and is safe to call twice. Routes for other wire formats
    (Anthropic, Responses) start a ChatCall from their translated request and render its chunks
    in their own shape.
    """

    chunks: AsyncIterator[dict]
    usage: Usage
    id: str
    created: int
    model: str
    close: Callable[[], Awaitable[None]]
