"""The chat app sends no sampling field the user did not set, and shows the model's own defaults."""

import json

import httpx
from textual.widgets import Input, Label

from localgw.tui.app import ChatApp
from localgw.tui.client import Delta, Finished, HttpChatClient, ModelInfo
from localgw.tui.history import ChatHistory
from tests.tui.fakes import FakeClient
from tests.tui.test_chat_app import send, wait_idle


def recording_client(extra_body=None):
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": "org/small", "object": "model", "loaded": True,
                 "default_sampling": {"temperature": 0.2, "top_p": 0.9, "top_k": 20}}]})
        bodies.append(json.loads(request.content))
        chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
        return httpx.Response(200, text=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n",
                              headers={"content-type": "text/event-stream"})

    client = HttpChatClient("http://test/v1", extra_body=extra_body)
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(handler))
    return client, bodies


async def test_no_sampling_field_is_sent_unless_the_user_set_it():
    client, bodies = recording_client()
    events = [e async for e in client.stream_chat("org/small", [{"role": "user", "content": "x"}],
                                                  temperature=None, max_tokens=None)]
    assert events[0] == Delta(content="hi") and isinstance(events[-1], Finished)
    assert set(bodies[0]) == {"model", "messages", "stream", "stream_options"}
    [e async for e in client.stream_chat("org/small", [], temperature=0.0, max_tokens=5)]
    assert bodies[1]["temperature"] == 0.0 and bodies[1]["max_tokens"] == 5
    assert "top_p" not in bodies[1] and "top_k" not in bodies[1]
    models = await client.list_models()
    assert models[0].default_sampling == {"temperature": 0.2, "top_p": 0.9, "top_k": 20}
    await client.aclose()


async def test_extra_body_reaches_every_request():
    client, bodies = recording_client(extra_body={"logit_bias": {"2": -100}})
    [e async for e in client.stream_chat("org/small", [], temperature=None, max_tokens=None)]
    assert bodies[0]["logit_bias"] == {"2": -100} and "temperature" not in bodies[0]
    await client.aclose()


async def test_settings_show_the_models_defaults_and_leave_them_to_the_server(tmp_path):
    history = ChatHistory(tmp_path / "chat.sqlite")
    models = [ModelInfo("org/small", 8192, "Q4_K_M", 98_000_000, [], True,
                        {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "min_p": 0.05})]
    client = FakeClient([Delta(content="ok")], models=models)
    app = ChatApp(client, history, model="org/small")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        label = app.screen.query_one("#model-defaults", Label)
        assert label.display
        text = str(label.render())
        assert "temperature 0.2" in text and "top_k 20" in text and "min_p 0.05" in text
        assert app.screen.query_one("#temperature", Input).placeholder == "model: 0.2"
        await pilot.click("#save")
        await pilot.pause()
        await send(pilot, "hi")
        await wait_idle(pilot)
        assert client.requests[-1]["temperature"] is None and client.requests[-1]["max_tokens"] is None
    history.close()
