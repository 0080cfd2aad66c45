"""Message widgets. Attributes down, messages up: the app feeds them text; they only render."""

from __future__ import annotations

import json
import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Markdown, Static


class UserMessage(Static):
    DEFAULT_CLASSES = "message user"


class ToolCalls(Static):
    """Tool calls as name(arguments), not as raw text."""

    def __init__(self) -> None:
        super().__init__("", classes="tool-calls")
        self.calls: dict[int, dict] = {}

    def add(self, deltas: list[dict]) -> None:
        for d in deltas:
            call = self.calls.setdefault(d.get("index", 0), {"name": "", "arguments": ""})
            fn = d.get("function") or {}
            call["name"] += fn.get("name") or ""
            call["arguments"] += fn.get("arguments") or ""
        self.display = bool(self.calls)
        self.update("\n".join(f"🔧 {c['name']}({self._args(c['arguments'])})"
                              for _, c in sorted(self.calls.items())))

    @staticmethod
    def _args(raw: str) -> str:
        try:
            return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in json.loads(raw).items())
        except (ValueError, AttributeError):
            return raw

    def as_openai(self) -> list[dict]:
        return [{"id": f"call_{i}", "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"] or "{}"}}
                for i, c in sorted(self.calls.items())]


# Repaint a streaming reply at most this often. The model shares the CPU with this app: a repaint
# per token (~150 a second on a small machine) took ~40% of its decode speed.
FLUSH_INTERVAL = 1 / 20


class AssistantMessage(Vertical):
    """Reasoning (collapsible, dimmed), the answer as streaming Markdown, and tool calls.

    Streamed text is taken at once (`content`, `reasoning` are always whole) but painted in
    batches: the first piece at once, then what arrived meanwhile every FLUSH_INTERVAL, appended
    to the Markdown stream (which parses only the new tail, never the whole reply)."""

    DEFAULT_CLASSES = "message assistant"

    def __init__(self, content: str = "", reasoning: str = "", tool_calls: list[dict] | None = None):
        super().__init__()
        self.content = content
        self.reasoning = reasoning
        self._initial_calls = tool_calls or []
        self._stream = None
        self._unpainted_content = ""
        self._reasoning_changed = False
        self._timer = None
        self._painted_at = 0.0

    def compose(self) -> ComposeResult:
        with Collapsible(title="Thinking", collapsed=True, classes="reasoning") as box:
            box.display = bool(self.reasoning)
            yield Static(self.reasoning, classes="reasoning-text")
        yield Markdown(self.content, classes="answer")
        yield ToolCalls()

    def on_mount(self) -> None:
        calls = self.query_one(ToolCalls)
        calls.display = False
        if self._initial_calls:
            calls.add([{"index": i, "function": c.get("function", {})}
                       for i, c in enumerate(self._initial_calls)])

    @property
    def tool_calls(self) -> ToolCalls:
        return self.query_one(ToolCalls)

    def add_reasoning(self, text: str) -> None:
        self.reasoning += text
        self._reasoning_changed = True
        self._schedule_paint()

    def add_content(self, text: str) -> None:
        self.content += text
        self._unpainted_content += text
        self._schedule_paint()

    def _schedule_paint(self) -> None:
        if self._timer is None:
            wait = self._painted_at + FLUSH_INTERVAL - time.monotonic()
            self._timer = self.set_timer(max(wait, 0.001), self._paint)  # textual: no 0 s timers

    async def _paint(self) -> None:
        self._timer = None
        self._painted_at = time.monotonic()
        if self._reasoning_changed:
            self._reasoning_changed = False
            box = self.query_one(".reasoning", Collapsible)
            if not box.display:
                box.display = True
                box.collapsed = False  # open while thinking; collapsed when done
            self.query_one(".reasoning-text", Static).update(self.reasoning)
        if self._unpainted_content:
            text, self._unpainted_content = self._unpainted_content, ""
            if self._stream is None:
                self._stream = Markdown.get_stream(self.query_one(".answer", Markdown))
            await self._stream.write(text)

    async def finish(self, note: str = "") -> None:
        if self._timer is not None:
            self._timer.stop()
        await self._paint()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if note:
            self.content += note
            await self.query_one(".answer", Markdown).update(self.content)
        if self.reasoning:
            self.query_one(".reasoning", Collapsible).collapsed = True
