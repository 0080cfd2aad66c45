"""What every renderer does with a chat chunk: walk choice 0's delta in the order the pipeline
guarantees (reasoning, then text, then tool calls, then the finish) and call the format's hooks."""

from __future__ import annotations

from typing import Any

Event = tuple[str, dict[str, Any]]


class ChunkRenderer:
    """Subclasses name their block kinds and implement start/_append/_tool_delta/_finish."""

    REASONING = "reasoning"
    TEXT = "text"

    def start(self) -> list[Event]:
        raise NotImplementedError

    def _append(self, kind: str, text: str) -> list[Event]:
        raise NotImplementedError

    def _tool_delta(self, call: dict) -> list[Event]:
        raise NotImplementedError

    def _finish(self, finish_reason: str, stop_sequence: str | None) -> list[Event]:
        raise NotImplementedError

    def on_chunk(self, chunk: dict) -> list[Event]:
        events = self.start()
        for choice in chunk["choices"]:
            if choice["index"] != 0:  # these formats have one choice
                continue
            delta = choice["delta"]
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                events += self._append(self.REASONING, reasoning)
            if delta.get("content"):
                events += self._append(self.TEXT, delta["content"])
            for call in delta.get("tool_calls") or []:
                events += self._tool_delta(call)
            if choice.get("finish_reason"):
                events += self._finish(choice["finish_reason"], choice.get("stop_reason"))
        return events
