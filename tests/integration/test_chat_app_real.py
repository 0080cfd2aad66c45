"""The chat app against the real server and model, over HTTP, headless."""

import asyncio

from textual.widgets import Input

from localgw.tui.app import ChatApp
from localgw.tui.client import HttpChatClient
from localgw.tui.history import ChatHistory
from localgw.tui.widgets import AssistantMessage
from tests.integration.conftest import MODEL_ID


async def test_chat_with_the_real_model(server, tmp_path):
    history = ChatHistory(tmp_path / "chat.sqlite")
    client = HttpChatClient(server.url + "/v1")
    app = ChatApp(client, history)  # no model given: it picks the server's loaded one
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(50):
                await pilot.pause()
                if app.model:
                    break
                await asyncio.sleep(0.05)
            assert app.model == MODEL_ID
            # a reply cap, as a user sets it in the settings: the small model need not stop by
            # itself (a clean-clone run once saw it still generating after 20 s)
            app.conv.max_tokens = 32
            app.query_one("#prompt", Input).value = "What is the capital of France?"
            await pilot.press("enter")
            for _ in range(400):
                await pilot.pause()
                if not app.generating and app.query(AssistantMessage).last().content:
                    break
                await asyncio.sleep(0.05)
            reply = app.query(AssistantMessage).last()
            assert reply.content.strip()
            status = str(app.query_one("#status").render())
            assert "TTFT" in status
            if len(reply.content) > 40:  # more than one token for sure: a decode speed too
                assert "tok/s" in status
            saved = history.messages(app.conv.id)
            assert [m.role for m in saved] == ["user", "assistant"]
            assert saved[1].content == reply.content
    finally:
        await client.aclose()
        history.close()
