"""HttpChatClient's errors: the server's message and code, over a mocked transport."""

import httpx
import pytest

from localgw.tui.client import ClientError, Delta, HttpChatClient


def client_answering(handler) -> HttpChatClient:
    client = HttpChatClient("http://server/v1")
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(handler))
    return client


async def collect(client: HttpChatClient, model: str = "m") -> list:
    return [e async for e in client.stream_chat(model, [{"role": "user", "content": "hi"}],
                                                 temperature=None, max_tokens=None)]


async def test_an_error_answer_keeps_the_servers_message_and_code():
    client = client_answering(lambda request: httpx.Response(404, json={"error": {
        "message": "The model 'old' does not exist. Available: new", "type": "model_not_found",
        "param": "model", "code": "model_not_found"}}))
    with pytest.raises(ClientError) as caught:
        await collect(client, "old")
    exc = caught.value
    assert (exc.status, exc.code) == (404, "model_not_found") and exc.model_not_found("old")
    assert str(exc) == "404: The model 'old' does not exist. Available: new"
    with pytest.raises(ClientError) as caught:
        await client.list_models()
    assert caught.value.code == "model_not_found"


async def test_an_error_inside_the_stream_keeps_its_message_and_code():
    body = (b'data: {"choices": [{"delta": {"content": "Hel"}}]}\n\n'
            b'data: {"error": {"message": "the model failed", "code": "server_error"}}\n\n')
    client = client_answering(lambda request: httpx.Response(
        200, content=body, headers={"content-type": "text/event-stream"}))
    events = []
    with pytest.raises(ClientError) as caught:
        async for event in client.stream_chat("m", [], temperature=None, max_tokens=None):
            events.append(event)
    assert events == [Delta(content="Hel")]
    assert (str(caught.value), caught.value.code) == ("the model failed", "server_error")


@pytest.mark.parametrize("exc,model,expected", [
    (ClientError("x", 404, "model_not_found"), "m", True),
    (ClientError("The model `m` does not exist.", 404), "m", True),  # a server with no code
    (ClientError("Not Found", 404), "m", False),  # a wrong URL, not a missing model
    (ClientError("m is too long", 400), "m", False),
    (ClientError("no server answers at http://x (ConnectError)"), "m", False),
])
def test_model_not_found(exc, model, expected):
    assert exc.model_not_found(model) is expected


async def test_a_body_that_is_not_an_openai_error_is_shown_as_text():
    client = client_answering(lambda request: httpx.Response(502, text="Bad gateway"))
    with pytest.raises(ClientError) as caught:
        await collect(client)
    assert str(caught.value) == "502: Bad gateway" and caught.value.code is None
