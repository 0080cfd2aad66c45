"""Message widgets. Attributes down, messages up: the app feeds them text; they only render."""

from __future__ import annotations

import asyncio
import json
import re
import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Size
from textual.widgets import Collapsible, Markdown, Static


class UserMessage(Static):
    DEFAULT_CLASSES = "message user"


class Notice(Static):
    """A line from the app in the conversation: an error, or what it did (e.g. changed model)."""

    DEFAULT_CLASSES = "message notice"

    def __init__(self, text: str, error: bool = False):
        super().__init__(text, markup=False)
        self.set_class(error, "error")


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

# A reply's answer is shown as a column of Markdown pieces, each of at least this many characters
# (the last may be shorter; one long block is never cut). Textual re-parses and re-lays out only
# the piece appended to, so a repaint's work does not grow with the reply.
PIECE_CHARS = 2000

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
# Characters that begin a paragraph when they begin a line after a blank line: no list item,
# heading, table or indented block starts with them, and a paragraph has no top margin, so two
# pieces cut there are spaced as one Markdown widget spaces the blocks.
_PARAGRAPH_START = set("\"'“‘(¿¡")


def _starts_paragraph(ch: str) -> bool:
    return ch.isalpha() or ch in _PARAGRAPH_START


def cut_at_lines(text: str, filled: int, size: int) -> list[str]:
    """`text` in parts: the first continues a piece that holds `filled` characters, each further
    one opens a piece. A piece ends at the first line end at or past `size` characters; that line
    end is left out (the break between two pieces stands for it)."""
    parts = []
    while (end := text.find("\n", max(size - filled, 0))) >= 0:
        parts.append(text[:end])
        text, filled = text[end + 1:], 0
    parts.append(text)
    return parts


class AnswerPiece(Markdown):
    """One piece of an answer: a Markdown widget whose height depends on its text and width only.

    Textual lays out a container whose children all have dynamic heights against its parent's
    height, and caches that layout by size; an answer's height changes as it streams, so every
    piece would be laid out anew, block by block, on each repaint. Markdown blocks are
    auto-height (never fr or %), so the parent's height cannot change a piece's: measuring it
    against a height of 0 gives the same answer and a cache entry that stays valid."""

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return super().get_content_height(Size(container.width, 0), viewport, width)


class MarkdownCutter:
    """Cuts streamed Markdown where a new piece may start without changing how it renders.

    A cut goes only before a line that follows a blank line, outside a fenced code block, and
    that starts a paragraph (see _PARAGRAPH_START): every block above has ended there. Not
    recognised: HTML blocks that span blank lines, setext headings and tables without a leading
    pipe (a cut before them moves them by a line), and reference links whose definition is in
    another piece. Each character is looked at once, as it arrives."""

    def __init__(self, piece_chars: int | None = None):
        self.piece_chars = PIECE_CHARS if piece_chars is None else piece_chars
        self.in_piece = 0  # characters in the current piece
        self.line = ""  # the start of the unfinished line (enough to recognise a fence)
        self.at_line_start = True
        self.after_blank = False  # the last finished line was blank
        self.fence: str | None = None  # the open fence's marker, e.g. "```"

    def feed(self, text: str) -> list[str]:
        """`text` in parts: the first continues the current piece, each further one opens a piece."""
        parts = [""]
        i = 0
        while i < len(text):
            if (self.at_line_start and self.after_blank and self.fence is None
                    and self.in_piece >= self.piece_chars and _starts_paragraph(text[i])):
                parts.append("")
                self.in_piece = 0
            end = text.find("\n", i)
            end = len(text) if end < 0 else end + 1
            chunk = text[i:end]
            parts[-1] += chunk
            self.in_piece += len(chunk)
            self.at_line_start = False
            if len(self.line) < 64:
                self.line += chunk[:64]
            if chunk.endswith("\n"):
                self._line_done(self.line)
                self.line, self.at_line_start = "", True
            i = end
        return parts

    def _line_done(self, line: str) -> None:
        stripped = line.strip()
        self.after_blank = not stripped
        if self.fence is None:
            match = _FENCE.match(line)
            if match:
                self.fence = match.group(1)
        elif (stripped.startswith(self.fence[0] * len(self.fence))
              and not stripped.strip(self.fence[0]) and len(line) - len(line.lstrip(" ")) <= 3):
            self.fence = None


class AssistantMessage(Vertical):
    """Reasoning (collapsible, dimmed), the answer as streaming Markdown, and tool calls.

    Streamed text is taken at once (`content`, `reasoning` are always whole) but painted in
    batches: the first piece at once, then what arrived meanwhile every FLUSH_INTERVAL. Only the
    new text is handed on: appended to the last Markdown piece of the answer (Textual re-parses
    from that piece's last block on), or mounted as a new piece where MarkdownCutter cuts; the
    reasoning likewise goes to the last of its Static pieces (a Static re-wraps all of its text
    on each update), cut at line ends by cut_at_lines."""

    DEFAULT_CLASSES = "message assistant"

    def __init__(self, content: str = "", reasoning: str = "", tool_calls: list[dict] | None = None):
        super().__init__()
        self._content = [content]
        self._reasoning = [reasoning]
        self._initial_calls = tool_calls or []
        self._cutter = MarkdownCutter()
        self._initial_pieces = self._cutter.feed(content)
        self._reasoning_piece = reasoning  # the text of the last reasoning Static
        self._unpainted_content: list[str] = []
        self._unpainted_reasoning: list[str] = []
        self._timer = None
        self._painted_at = 0.0
        self._painting = asyncio.Lock()

    @property
    def content(self) -> str:
        if len(self._content) > 1:
            self._content[:] = ["".join(self._content)]
        return self._content[0]

    @property
    def reasoning(self) -> str:
        if len(self._reasoning) > 1:
            self._reasoning[:] = ["".join(self._reasoning)]
        return self._reasoning[0]

    def compose(self) -> ComposeResult:
        with Collapsible(title="Thinking", collapsed=True, classes="reasoning") as box:
            box.display = bool(self.reasoning)
            yield Static(self.reasoning, classes="reasoning-text", markup=False)
        for piece in self._initial_pieces:
            yield AnswerPiece(piece, classes="answer")
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

    @property
    def pieces(self) -> list[AnswerPiece]:
        """The answer's Markdown widgets, in order."""
        return list(self.query_children(AnswerPiece))

    def add_reasoning(self, text: str) -> None:
        self._reasoning.append(text)
        self._unpainted_reasoning.append(text)
        self._schedule_paint()

    def add_content(self, text: str) -> None:
        self._content.append(text)
        self._unpainted_content.append(text)
        self._schedule_paint()

    def _schedule_paint(self) -> None:
        if self._timer is None:
            wait = self._painted_at + FLUSH_INTERVAL - time.monotonic()
            self._timer = self.set_timer(max(wait, 0.001), self._paint)  # textual: no 0 s timers

    async def _paint(self) -> None:
        self._timer = None
        self._painted_at = time.monotonic()
        async with self._painting:  # a paint from finish() waits for one from the timer
            if self._unpainted_reasoning:
                text = "".join(self._unpainted_reasoning)
                self._unpainted_reasoning.clear()
                await self._paint_reasoning(text)
            if self._unpainted_content:
                text = "".join(self._unpainted_content)
                self._unpainted_content.clear()
                parts = self._cutter.feed(text)
                if parts[0]:
                    await self.pieces[-1].append(parts[0])
                for part in parts[1:]:
                    await self.mount(AnswerPiece(part, classes="answer"), before=self.tool_calls)

    async def _paint_reasoning(self, text: str) -> None:
        box = self.query_one(".reasoning", Collapsible)
        if not box.display:
            box.display = True
            box.collapsed = False  # open while thinking; collapsed when done
        parts = cut_at_lines(text, len(self._reasoning_piece), PIECE_CHARS)
        if parts[0]:
            self._reasoning_piece += parts[0]
            box.query(".reasoning-text").last(Static).update(self._reasoning_piece)
        for part in parts[1:]:
            self._reasoning_piece = part
            await box.query_one(Collapsible.Contents).mount(
                Static(part, classes="reasoning-text", markup=False))

    async def finish(self, note: str = "") -> None:
        if self._timer is not None:
            self._timer.stop()
        await self._paint()
        if note:
            self._content.append(note)
            await self.pieces[-1].append(note)
        if self.reasoning:
            self.query_one(".reasoning", Collapsible).collapsed = True
