"""What every renderer does with a chat's events (`chat.events`): keep the usage counts, and call
the format's hooks for choice 0's deltas and finish, in the order the pipeline guarantees
(reasoning, then text, then tool calls, then the finish)."""

from __future__ import annotations

from typing import Any, AsyncIterator

from localgw.chat.events import (ChatEvent, Finish, ReasoningDelta, TextDelta, ToolCallDelta,
                                 UsageCounts)
from localgw.chat.responses import Usage

Event = tuple[str, dict[str, Any]]


class EventRenderer:
    """Subclasses name their block kinds and implement start/_append/_tool_delta/_finish.

    `usage` holds the counts so far: those given, then the last `UsageCounts` event's. The stream
    starts (`start`) with the first event that is not a count."""

    REASONING = "reasoning"
    TEXT = "text"

    def __init__(self, usage: Usage | UsageCounts | None = None):
        self.usage = usage if usage is not None else UsageCounts()

    def start(self) -> list[Event]:
        raise NotImplementedError

    def _append(self, kind: str, text: str) -> list[Event]:
        raise NotImplementedError

    def _tool_delta(self, call: ToolCallDelta) -> list[Event]:
        raise NotImplementedError

    def _finish(self, finish_reason: str, stop_sequence: str | None) -> list[Event]:
        raise NotImplementedError

    def on_event(self, event: ChatEvent) -> list[Event]:
        kind = type(event)
        if kind is UsageCounts:
            self.usage = event
            return []
        events = self.start()
        if event.index != 0:  # these formats have one choice
            return events
        if kind is TextDelta:
            if event.text:
                events += self._append(self.TEXT, event.text)
        elif kind is ReasoningDelta:
            if event.text:
                events += self._append(self.REASONING, event.text)
        elif kind is ToolCallDelta:
            events += self._tool_delta(event)
        elif kind is Finish:
            events += self._finish(event.reason, event.stop_sequence)
        return events

    async def render(self, events: AsyncIterator[ChatEvent]) -> AsyncIterator[Event]:
        """The format's event stream of a chat call's events."""
        async for event in events:
            for out in self.on_event(event):
                yield out
