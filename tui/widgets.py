"""Message widgets. Attributes down, messages up: the app feeds them text; they only render."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import NamedTuple

from markdown_it import MarkdownIt
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


# A streaming reply is repainted in batches, as often as keeps the app's CPU time at about
# PAINT_CPU_SHARE of one CPU (the model decodes on the same machine, and on a small one each
# cycle the app takes is the model's): each wait is the CPU time the app used since the last
# repaint began, over that share; never shorter than FLUSH_INTERVAL nor longer than
# MAX_PAINT_INTERVAL.
PAINT_CPU_SHARE = 0.06
FLUSH_INTERVAL = 1 / 20
MAX_PAINT_INTERVAL = 0.5

# While a reply streams it keeps blank lines below its text: when fewer than 2 are left, it grows
# by this share of the view's height (at least 4 lines). Textual repaints the whole view when the
# reply's height changes (everything above it moves); text written into lines already there
# repaints only the paragraph it goes to.
RUNWAY_SHARE = 1 / 4

# A reply's answer is shown as a column of Markdown pieces, each of at least this many characters
# (the last may be shorter; a long list, table, quote or code block is never cut); its reasoning
# likewise as Statics. Textual re-parses the piece appended to from its last block on, and
# re-lays out only that piece, so a repaint's work does not grow with the reply.
PIECE_CHARS = 1000


def paint_wait(spent: float) -> float:
    """Seconds from one repaint to the next, `spent` the app's CPU seconds between the last two."""
    return min(max(spent / PAINT_CPU_SHARE, FLUSH_INTERVAL), MAX_PAINT_INTERVAL)


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
# Characters that begin a paragraph when they begin a line: no list item, heading, block quote,
# table row, fence or indented block starts with them, and none can interrupt a paragraph.
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


def _line_breaks(state) -> None:
    """A markdown-it core rule: every line end inside a paragraph is a line break (as chat apps
    show a model's single newlines), not a space."""
    for token in state.tokens:
        for child in token.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"


def answer_parser() -> MarkdownIt:
    parser = MarkdownIt("gfm-like")
    parser.core.ruler.push("line_breaks", _line_breaks)
    return parser


class AnswerPiece(Markdown):
    """One piece of an answer: Markdown whose line ends are line breaks, laid out by its own text
    and width only.

    Textual lays out a container whose children all have dynamic heights against its parent's
    height, and caches that layout by size; an answer's height changes as it streams, so every
    piece would be laid out anew, block by block, on each repaint. Markdown blocks are
    auto-height (never fr or %), so the parent's height cannot change a piece's: measuring it
    against a height of 0 gives the same answer and a cache entry that stays valid.

    The class "-paragraph-continues" marks a piece whose last paragraph goes on in the next
    piece (app.tcss drops that paragraph's bottom margin)."""

    def __init__(self, markdown: str, continues: bool = False):
        parser = answer_parser()  # one per piece: its appends and updates never overlap
        super().__init__(markdown, classes="answer", parser_factory=lambda: parser)
        self.set_class(continues, "-paragraph-continues")

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return super().get_content_height(Size(container.width, 0), viewport, width)


class Part(NamedTuple):
    text: str
    continues: bool = False  # the piece this part opens goes on with the last one's paragraph


class MarkdownCutter:
    """Cuts streamed Markdown where a new piece may start and render as if it were not cut.

    A cut goes only before a line that starts a paragraph (see _PARAGRAPH_START), outside a
    fenced code block, where either a blank line came before (every block above has ended), or
    every line since the last blank line began that way too, so they are one paragraph's (which
    then goes on in the next piece; with line ends shown as line breaks it looks the same). Not
    recognised: HTML blocks that span blank lines, setext headings and tables
    without a leading pipe (a cut before them moves them by a line), and reference links whose
    definition is in another piece. Each character is looked at once, as it arrives."""

    def __init__(self, piece_chars: int | None = None):
        self.piece_chars = PIECE_CHARS if piece_chars is None else piece_chars
        self.in_piece = 0  # characters in the current piece
        self.line = ""  # the start of the unfinished line (enough to recognise a fence)
        self.at_line_start = True
        self.block: str | None = "start"  # None after a blank line; "paragraph"; "other"
        self.fence: str | None = None  # the open fence's marker, e.g. "```"

    def feed(self, text: str) -> list[Part]:
        """`text` in parts: the first continues the current piece, each further one opens a piece."""
        parts = [Part("")]
        i = 0
        while i < len(text):
            if self.at_line_start and self.fence is None:
                paragraph = _starts_paragraph(text[i])
                if (paragraph and self.block in (None, "paragraph")
                        and self.in_piece >= self.piece_chars):
                    parts.append(Part("", continues=self.block == "paragraph"))
                    self.in_piece = 0
                if self.block in (None, "start") or not paragraph:
                    self.block = "paragraph" if paragraph else "other"
            end = text.find("\n", i)
            end = len(text) if end < 0 else end + 1
            chunk = text[i:end]
            parts[-1] = parts[-1]._replace(text=parts[-1].text + chunk)
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
        if self.fence is None:
            match = _FENCE.match(line)
            if match:
                self.fence, self.block = match.group(1), "other"
            elif not stripped:
                self.block = None
        elif (stripped.startswith(self.fence[0] * len(self.fence))
              and not stripped.strip(self.fence[0]) and len(line) - len(line.lstrip(" ")) <= 3):
            self.fence = None


class AssistantMessage(Vertical):
    """Reasoning (collapsible, dimmed), the answer as streaming Markdown, and tool calls.

    Streamed text is taken at once (`content`, `reasoning` are always whole) but painted in
    batches: the first piece at once, then what arrived meanwhile (see PAINT_CPU_SHARE). Only the
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
        self._next_paint_at = 0.0
        self._cpu_at: float | None = None  # the app's CPU time when the last repaint began
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
        pieces = self._initial_pieces
        for piece, after in zip(pieces, pieces[1:] + [Part("")]):
            yield AnswerPiece(piece.text, continues=after.continues)
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
            wait = self._next_paint_at - time.monotonic()
            self._timer = self.set_timer(max(wait, 0.001), self._paint)  # textual: no 0 s timers

    async def _paint(self) -> None:
        self._timer = None
        cpu = time.process_time()
        spent = 0.0 if self._cpu_at is None else cpu - self._cpu_at
        self._cpu_at = cpu
        self._next_paint_at = time.monotonic() + paint_wait(spent)
        self._keep_runway()
        async with self._painting:  # a paint from finish() waits for one from the timer
            if self._unpainted_reasoning:
                text = "".join(self._unpainted_reasoning)
                self._unpainted_reasoning.clear()
                await self._paint_reasoning(text)
            if self._unpainted_content:
                text = "".join(self._unpainted_content)
                self._unpainted_content.clear()
                parts = self._cutter.feed(text)
                if parts[0].text:
                    await self.pieces[-1].append(parts[0].text)
                for part in parts[1:]:
                    self.pieces[-1].set_class(part.continues, "-paragraph-continues")
                    await self.mount(AnswerPiece(part.text), before=self.tool_calls)

    def _keep_runway(self) -> None:
        """Reserve blank lines below the text (as laid out at the last repaint) as they run out."""
        shown = [w.region for w in self.children if w.display]
        top = self.content_region.y
        if not shown or not self.parent.size.height:
            return
        used = max(r.bottom for r in shown) - top
        reserved = self.styles.min_height.value if self.styles.min_height is not None else 0
        if reserved - used < 2:
            self.styles.min_height = used + max(4, int(self.parent.size.height * RUNWAY_SHARE))

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
        self.styles.min_height = None  # the reply as tall as its text
        if self.reasoning:
            self.query_one(".reasoning", Collapsible).collapsed = True
