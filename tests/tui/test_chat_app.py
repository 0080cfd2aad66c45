"""The chat app, headless (App.run_test + Pilot), with a scripted client."""

import asyncio

import pytest
from textual.widgets import Collapsible, Input, Markdown, OptionList

from localgw.tui.app import ChatApp
from localgw.tui.client import ClientError, Delta, ModelInfo
from localgw.tui.history import ChatHistory
from localgw.tui.widgets import AssistantMessage, Notice, ToolCalls, UserMessage
from tests.tui.fakes import FakeClient


@pytest.fixture
def history(tmp_path):
    h = ChatHistory(tmp_path / "chat.sqlite")
    yield h
    h.close()


async def send(pilot, text: str):
    prompt = pilot.app.query_one("#prompt", Input)
    prompt.value = text
    await pilot.press("enter")
    await pilot.pause()


async def wait_idle(pilot):
    for _ in range(100):
        await pilot.pause()
        if not pilot.app.generating:
            return
        await asyncio.sleep(0.01)


def answer_text(app) -> str:
    return app.query(AssistantMessage).last().content


async def test_send_and_see_the_streamed_answer(history):
    client = FakeClient([Delta(content="Hello "), Delta(content="**world**"), Delta(content="!")])
    app = ChatApp(client, history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "Hi there")
        await wait_idle(pilot)
        assert [w.renderable if hasattr(w, "renderable") else None for w in app.query(UserMessage)]
        assert answer_text(app) == "Hello **world**!"
        markdown = app.query(AssistantMessage).last().query_one(Markdown)
        assert "world" in markdown.source
        assert client.requests[0]["messages"][-1] == {"role": "user", "content": "Hi there"}
        status = str(app.query_one("#status").render())
        assert "small" in status and "TTFT" in status and "cached 8/12" in status
        assert app.conv.title == "Hi there"


async def test_escape_stops_the_generation_and_the_prompt_is_usable(history):
    client = FakeClient([Delta(content="Once upon a time")], block=True)
    app = ChatApp(client, history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "Tell me a story")
        await asyncio.wait_for(client.started.wait(), 5)
        await pilot.pause()
        assert app.generating
        await pilot.press("escape")
        await wait_idle(pilot)
        assert client.cancelled.is_set()          # the request was closed
        assert not app.generating
        assert "(stopped)" in answer_text(app)
        assert app.focused is app.query_one("#prompt")
        client.block, client.script = False, [Delta(content="Next answer")]
        await send(pilot, "again")
        await wait_idle(pilot)
        assert answer_text(app) == "Next answer"


async def test_reasoning_shown_apart_and_collapsed_when_done(history):
    client = FakeClient([Delta(reasoning="Let me think. "), Delta(reasoning="2+2=4."),
                         Delta(content="It is **4**.")])
    app = ChatApp(client, history, model="org/other")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "2+2?")
        await wait_idle(pilot)
        reply = app.query(AssistantMessage).last()
        assert reply.reasoning == "Let me think. 2+2=4."
        assert reply.content == "It is **4**."
        box = reply.query_one(Collapsible)
        assert box.display and box.collapsed
        saved = history.messages(app.conv.id)[-1]
        assert saved.reasoning == "Let me think. 2+2=4." and saved.content == "It is **4**."


async def test_tool_calls_are_shown_as_calls(history):
    client = FakeClient([Delta(tool_calls=[{"index": 0, "id": "call_1", "type": "function",
                                            "function": {"name": "get_weather", "arguments": ""}}]),
                         Delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
                         Delta(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}])])
    app = ChatApp(client, history, model="org/other")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "Weather?")
        await wait_idle(pilot)
        calls = app.query(AssistantMessage).last().query_one(ToolCalls)
        assert calls.display
        assert str(calls.render()) == '🔧 get_weather(city="Paris")'
        assert history.messages(app.conv.id)[-1].tool_calls[0]["function"]["name"] == "get_weather"


async def test_switching_model_with_the_picker(history):
    client = FakeClient()
    app = ChatApp(client, history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause(0.2)
        options = app.screen.query_one(OptionList)
        assert "1.5 GB" in str(options.get_option_at_index(1).prompt)
        options.highlighted = 1
        await pilot.press("enter")
        await pilot.pause()
        assert app.model == "org/other"
        await send(pilot, "hello")
        await wait_idle(pilot)
        assert client.requests[-1]["model"] == "org/other"
        assert history.get(app.conv.id).model == "org/other"


async def test_conversations_are_kept_and_reopened(tmp_path):
    path = tmp_path / "chat.sqlite"
    first = ChatHistory(path)
    app = ChatApp(FakeClient([Delta(content="Remembered answer")]), first, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "Remember this")
        await wait_idle(pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert len(first.conversations()) == 2
    first.close()

    again = ChatHistory(path)
    app = ChatApp(FakeClient(), again, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = [c.title for c in again.conversations()]
        assert "Remember this" in titles
        old = next(c for c in again.conversations() if c.title == "Remember this")
        await app.open_conversation(old)
        await pilot.pause()
        assert answer_text(app) == "Remembered answer"
        # rename and delete
        await pilot.press("ctrl+r")
        await pilot.pause()
        app.screen.query_one(Input).value = "Renamed"
        await pilot.press("enter")
        await pilot.pause()
        assert again.get(old.id).title == "Renamed"
        await pilot.press("ctrl+t")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert again.get(old.id) is None
    again.close()


async def test_settings_reach_the_request(history):
    client = FakeClient()
    app = ChatApp(client, history, model="org/small")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause()
        screen = app.screen
        screen.query_one("#system").text = "Be brief."
        screen.query_one("#temperature", Input).value = "0.3"
        screen.query_one("#max_tokens", Input).value = "50"
        await pilot.click("#save")
        await pilot.pause()
        await send(pilot, "hi")
        await wait_idle(pilot)
        request = client.requests[-1]
        assert request["messages"][0] == {"role": "system", "content": "Be brief."}
        assert request["temperature"] == 0.3 and request["max_tokens"] == 50


def notices(app, error: bool | None = None) -> list[str]:
    return [str(n.render()) for n in app.query(Notice)
            if error is None or n.has_class("error") == error]


@pytest.mark.parametrize("error,needle", [
    (ClientError("no server answers at http://127.0.0.1:9 (ConnectError)"),
     "no server answers at http://127.0.0.1:9 (ConnectError)"),
    (ClientError("missing or invalid API key", 401), "401: missing or invalid API key"),
    (ClientError("This model's maximum context length is 8192 tokens", 400),
     "400: This model's maximum context length is 8192 tokens"),
])
async def test_a_failed_request_shows_the_servers_error_in_the_conversation(history, error, needle):
    client = FakeClient([Delta(content="first answer")])
    app = ChatApp(client, history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "first")
        await wait_idle(pilot)
        client.error = error
        await send(pilot, "second")
        await wait_idle(pilot)
        await pilot.pause()
        assert notices(app, error=True) == [f"Request failed: {needle}"]
        assert "failed" in str(app.query_one("#status").render())
        assert [m.content for m in history.messages(app.conv.id)] == ["first", "first answer", "second"]
        assert answer_text(app) == "first answer"   # the failed reply left no empty bubble
        assert not app.generating
        assert app.model == "org/small"  # not a missing model: kept


async def test_a_stored_model_the_server_lacks_is_replaced_on_start_and_said(history):
    history.create("Older chat", "org/other")
    stale = history.create("Last chat", "SmolLM2-135M-Instruct.Q4_1")  # served by path, then
    client = FakeClient([Delta(content="Hi!")])
    app = ChatApp(client, history)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        # the last used model the server has: org/other (an older chat's), not the loaded one
        assert app.conv.id == stale.id and app.model == "org/other"
        assert history.get(stale.id).model == "org/other"
        assert notices(app) == ["The server has no model SmolLM2-135M-Instruct.Q4_1: "
                                "using org/other (ctrl+o picks another)."]
        assert str(app.query_one("#status").render()) == "other"  # the status line names it
        await send(pilot, "hello")
        await wait_idle(pilot)
        assert client.requests[-1]["model"] == "org/other" and answer_text(app) == "Hi!"


async def test_a_known_model_is_kept_quietly_and_none_given_takes_the_loaded_one(history):
    app = ChatApp(FakeClient(), history)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.model == "org/small" and notices(app) == []
    app = ChatApp(FakeClient(), history, model="org/other")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.model == "org/other" and notices(app) == []


async def test_model_not_found_on_send_switches_to_one_the_server_has(history):
    client = FakeClient([Delta(content="answer")])
    app = ChatApp(client, history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        # the server restarts with another model
        client.models = [ModelInfo("org/new", 4096, "Q4_K_M", 1, [], True)]
        await send(pilot, "hello")
        await wait_idle(pilot)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert notices(app) == [
            "Request failed: 404: The model 'org/small' does not exist. Available: org/new",
            "The server has no model org/small: using org/new (ctrl+o picks another)."]
        assert app.model == "org/new" and history.get(app.conv.id).model == "org/new"
        await send(pilot, "hello again")
        await wait_idle(pilot)
        assert client.requests[-1]["model"] == "org/new" and answer_text(app) == "answer"


async def test_a_server_that_cannot_list_its_models_is_said_on_start(history):
    app = ChatApp(FakeClient(error=ClientError("no server answers at http://fake (ConnectError)")),
                  history)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert notices(app, error=True) == [
            "Cannot list the server's models: no server answers at http://fake (ConnectError)"]


async def test_copy_last_answer(history):
    app = ChatApp(FakeClient([Delta(content="copy me")]), history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "x")
        await wait_idle(pilot)
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert app.clipboard == "copy me"


async def test_footer_shows_the_key_bindings_at_80x24(history):
    app = ChatApp(FakeClient(), history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = app.export_screenshot()
        for key in ("New", "Stop", "Model", "Settings", "Copy"):
            assert key in text


async def test_status_says_the_model_is_loading_before_the_first_token(history):
    # the first token comes late enough that a busy machine still sees the wait (a suite run
    # once took over a second for the sleep and pause below)
    client = FakeClient([Delta(content="ready")], first_delay=3.0,
                        health={"status": "ok", "models": [], "loading": ["org/small"]})
    app = ChatApp(client, history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "hi")
        await asyncio.sleep(0.6)
        await pilot.pause()
        assert "loading model" in str(app.query_one("#status").render())
        await wait_idle(pilot)
        assert answer_text(app) == "ready"
        assert "loading" not in str(app.query_one("#status").render())


async def test_a_fast_stream_is_painted_in_batches(history, monkeypatch):
    """Hundreds of deltas: the whole text arrives, in at most ~20 Markdown appends a second."""
    appends = []
    original = Markdown.append

    def counting(self, markdown):
        appends.append(markdown)
        return original(self, markdown)

    monkeypatch.setattr(Markdown, "append", counting)
    words = [f"word{i} " for i in range(600)]
    app = ChatApp(FakeClient([Delta(content=w) for w in words]), history, model="org/small")
    async with app.run_test(size=(80, 24)) as pilot:
        started = asyncio.get_running_loop().time()
        await send(pilot, "many words")
        await wait_idle(pilot)
        elapsed = asyncio.get_running_loop().time() - started
        reply = app.query(AssistantMessage).last()
        assert reply.content == "".join(words)
        assert reply.query_one(Markdown).source.strip() == "".join(words).strip()
        assert "".join(appends) == "".join(words)
        assert len(appends) <= elapsed * 20 + 3, (len(appends), elapsed)
