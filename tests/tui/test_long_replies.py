"""Long replies: shown in pieces, painted with work that does not grow with the reply."""

import asyncio
from collections import Counter

import pytest
import textual.widget
from textual.app import App
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static

from localgw.tui import widgets
from localgw.tui.app import ChatApp
from localgw.tui.client import Delta
from localgw.tui.history import ChatHistory
from localgw.tui.widgets import AnswerPiece, AssistantMessage, MarkdownCutter, Part, cut_at_lines
from tests.tui.fakes import FakeClient

# every kind of block, and blank lines where no piece may start
DOC = """Intro paragraph with *emphasis*.

## A heading

Paragraph under it.

- item one

- item two, loose
  continued

Paragraph after the list.

1. first

2. second

```python
x = 1

later = "inside the fence"
```

> quoted

Quoted no more.

    indented code

    still code

"Dialogue," said the knight.

A poem's first line,
its second line
(and a third).
- a list interrupts it
lazily continued

Last paragraph."""

# the lines a piece may start with, after the first: a paragraph's first line after a blank
# line, or a paragraph's next line (no heading, list item, fenced or indented line, nor a line
# continuing a list item or block quote)
CUTS = ["Paragraph under it.", "Paragraph after the list.", "Quoted no more.",
        '"Dialogue," said the knight.', "A poem's first line,", "its second line",
        "(and a third).", "Last paragraph."]
CONTINUES = {"its second line", "(and a third)."}


def test_cutter_cuts_only_where_a_paragraph_starts():
    parts = MarkdownCutter(piece_chars=1).feed(DOC)
    assert "".join(p.text for p in parts) == DOC
    assert parts[0].text.startswith("Intro") and len(parts) == 1 + len(CUTS)
    assert [p.text.split("\n")[0] for p in parts[1:]] == CUTS
    assert {p.text.split("\n")[0] for p in parts if p.continues} == CONTINUES


@pytest.mark.parametrize("step", [1, 2, 7, 64])
def test_cutter_cuts_the_same_however_the_text_arrives(step):
    cutter = MarkdownCutter(piece_chars=1)
    pieces = [Part("")]
    for i in range(0, len(DOC), step):
        parts = cutter.feed(DOC[i:i + step])
        pieces[-1] = pieces[-1]._replace(text=pieces[-1].text + parts[0].text)
        pieces += parts[1:]
    assert pieces == MarkdownCutter(piece_chars=1).feed(DOC)


def test_cutter_waits_for_a_piece_to_be_long_enough():
    doc = "\n\n".join(f"Paragraph {i} " + "word " * 20 for i in range(10))
    parts = [p.text for p in MarkdownCutter(piece_chars=300).feed(doc)]
    assert "".join(parts) == doc and len(parts) > 3
    assert all(len(p) >= 300 for p in parts[:-1])
    assert all(p.startswith("Paragraph") for p in parts)


def test_cut_at_lines():
    assert cut_at_lines("abc", 0, 10) == ["abc"]
    assert cut_at_lines("ab\ncd\nef", 0, 1) == ["ab", "cd", "ef"]
    assert cut_at_lines("ab\ncd\nef", 0, 3) == ["ab\ncd", "ef"]
    assert cut_at_lines("\nxy", 5, 5) == ["", "xy"]  # the piece was full: cut at once
    assert cut_at_lines("xy\n", 9, 10) == ["xy", ""]
    text = "\n".join(f"line {i}" for i in range(50))
    assert "\n".join(cut_at_lines(text, 0, 40)) == text


def test_repaints_are_spaced_by_the_cpu_time_they_take():
    share = widgets.PAINT_CPU_SHARE
    assert widgets.paint_wait(0.0) == widgets.FLUSH_INTERVAL  # cheap: as often as allowed
    assert widgets.paint_wait(0.01) == pytest.approx(0.01 / share)
    assert widgets.paint_wait(10.0) == widgets.MAX_PAINT_INTERVAL  # dear: still now and then


def screen_text(app) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


class OneReply(App):
    CSS_PATH = str(widgets.__file__).replace("widgets.py", "app.tcss")

    def compose(self):
        with VerticalScroll(id="messages"):
            yield AssistantMessage(DOC)


async def test_pieces_look_like_one_markdown(monkeypatch):
    shots = {}
    for piece_chars in (10**9, 1):
        monkeypatch.setattr(widgets, "PIECE_CHARS", piece_chars)
        app = OneReply()
        async with app.run_test(size=(60, 90)) as pilot:
            await pilot.pause()
            shots[piece_chars] = (len(app.query(AnswerPiece)), screen_text(app))
    assert shots[10**9][0] == 1 and shots[1][0] == 1 + len(CUTS)
    assert shots[1][1] == shots[10**9][1]


@pytest.fixture
def history(tmp_path):
    h = ChatHistory(tmp_path / "chat.sqlite")
    yield h
    h.close()


async def wait_idle(pilot):
    for _ in range(400):
        await pilot.pause()
        if not pilot.app.generating:
            return
        await asyncio.sleep(0.01)


# layouts of a piece after a change of its text or width: measured and placed (2), once for the
# change and once as its blocks take their new sizes, and a round for a layout the change left pending
SETTLING_LAYOUTS = 6


async def test_a_long_reply_streams_into_pieces_and_finished_pieces_are_left_alone(history, monkeypatch):
    """Only the last piece is appended to and laid out again; the reply is kept whole.

    A change of a piece's text or width settles in a few layouts (the piece's own, then one more
    as its blocks take their new sizes), at whatever moment the app gets to them; what must not
    happen is a finished piece laid out again at each repaint of the pieces after it."""
    monkeypatch.setattr(widgets, "PIECE_CHARS", 300)
    monkeypatch.setattr(widgets, "PAINT_CPU_SHARE", 1.0)  # many paints
    paragraphs = [f"Chapter {i}: " + " ".join(f"w{i}_{j}" for j in range(40)) for i in range(12)]
    text = "\n\n".join(paragraphs)
    words = [w + " " for w in text.split(" ")[:-1]] + [text.split(" ")[-1]]
    assert "".join(words) == text

    appended, laid_out = [], Counter()  # laid_out[piece, width, its text]: layouts
    append, arrange = Markdown.append, textual.widget.arrange

    def counting_append(self, markdown):
        appended.append((self, markdown))
        return append(self, markdown)

    def counting_arrange(widget, children, size, *args, **kwargs):
        if isinstance(widget, AnswerPiece):
            laid_out[widget, size.width, widget.source] += 1
        return arrange(widget, children, size, *args, **kwargs)

    monkeypatch.setattr(Markdown, "append", counting_append)
    monkeypatch.setattr(textual.widget, "arrange", counting_arrange)

    class Paced(FakeClient):
        async def stream_chat(self, *args, **kwargs):
            async for event in super().stream_chat(*args, **kwargs):
                await asyncio.sleep(0.002)  # several paints, each of some words
                yield event

    app = ChatApp(Paced([Delta(content=w) for w in words]), history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#prompt").value = "a long story"
        await pilot.press("enter")
        await wait_idle(pilot)
        reply = app.query(AssistantMessage).last()
        pieces = reply.pieces
        assert reply.content == text
        assert history.messages(app.conv.id)[-1].content == text
        assert len(pieces) >= 5
        assert "".join(p.source for p in pieces) == text
        assert all(len(p.source) >= 300 for p in pieces[:-1])
        # only new text was handed on, never the reply again
        assert sum(len(md) for _, md in appended) <= len(text)
        # once done, the first piece was laid out a few times at each width it had, however
        # many repaints of the pieces after it followed (each would lay it out twice)
        first = pieces[0]
        last_own = max(i for i, (piece, _) in enumerate(appended) if piece is first)
        repaints_after = len(appended) - last_own - 1
        done = {width: n for (piece, width, source), n in laid_out.items()
                if piece is first and source == first.source}
        assert repaints_after > SETTLING_LAYOUTS, repaints_after
        assert done and max(done.values()) <= SETTLING_LAYOUTS, done


async def test_long_reasoning_is_painted_in_pieces_cut_at_line_ends(history, monkeypatch):
    monkeypatch.setattr(widgets, "PIECE_CHARS", 200)
    lines = [f"Step {i}: " + "think " * 12 for i in range(20)]
    reasoning = "\n".join(lines)
    deltas = [Delta(reasoning=line + ("\n" if i < len(lines) - 1 else ""))
              for i, line in enumerate(lines)] + [Delta(content="Done.")]
    app = ChatApp(FakeClient(deltas), history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#prompt").value = "think"
        await pilot.press("enter")
        await wait_idle(pilot)
        reply = app.query(AssistantMessage).last()
        statics = list(reply.query(".reasoning-text").results(Static))
        assert reply.reasoning == reasoning
        assert len(statics) > 2
        assert "\n".join(str(s.content) for s in statics) == reasoning


async def test_a_streaming_reply_keeps_blank_lines_below_so_most_repaints_keep_its_height(
        history, monkeypatch):
    monkeypatch.setattr(widgets, "PAINT_CPU_SHARE", 1.0)  # many paints
    lines = [f"Line {i}: " + "word " * 8 for i in range(60)]
    heights, paints = [], []
    paint = AssistantMessage._paint

    async def watched(self):
        heights.append(self.outer_size.height)
        await paint(self)
        paints.append(self.styles.min_height)

    monkeypatch.setattr(AssistantMessage, "_paint", watched)

    class Paced(FakeClient):
        async def stream_chat(self, *args, **kwargs):
            async for event in super().stream_chat(*args, **kwargs):
                await asyncio.sleep(0.003)
                yield event

    words = [w + " " for line in lines for w in line.split()]
    app = ChatApp(Paced([Delta(content=w) for w in words]), history, model="org/small")
    async with app.run_test(size=(80, 60)) as pilot:  # a runway of 13 lines
        app.query_one("#prompt").value = "lines"
        await pilot.press("enter")
        await wait_idle(pilot)
        reply = app.query(AssistantMessage).last()
        assert reply.content == "".join(words)
        assert len(heights) > 30
        # the height changed at a few repaints only (each time by several lines)
        changes = sum(a != b for a, b in zip(heights, heights[1:]))
        assert changes < len(heights) / 3, (changes, len(heights))
        assert all(p is not None for p in paints[:-1])
        await pilot.pause()
        assert reply.styles.min_height is None  # done: as tall as its text
