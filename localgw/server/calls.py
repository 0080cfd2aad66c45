"""ChatCall: a request running somewhere (a local model or an upstream), as routes see it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import AsyncIterator, Awaitable, Callable

from localgw.chat.responses import ChatChunker, Usage


@dataclass
class ChatCall:
    """A chat (or text) completion running on a model, as every front door sees it.

    A chat's `events` are typed chat events (`chat.events`), which each door renders in its own
    shape: `chunks` is OpenAI's (`openai` renders them); the Anthropic and Responses doors render
    `events` themselves. A call without `openai` carries OpenAI chunk dicts in `events` as they
    are, and `chunks` is that stream: a text completion's `text_completion` chunks, or an
    upstream's chat chunks before the service reads them into events. `close()` stops the work
    and frees the model, and is safe to call twice.
    """

    events: AsyncIterator
    usage: Usage
    id: str
    created: int
    model: str
    close: Callable[[], Awaitable[None]]
    openai: ChatChunker | None = None

    @cached_property
    def chunks(self) -> AsyncIterator[dict]:
        """The call in OpenAI's shape (one stream: read either `chunks` or `events`)."""
        return self.events if self.openai is None else self.openai.render(self.events)
