"""The SSE response: chat's `data:`/`[DONE]` frames by default, named events for other formats."""

import anyio

from localgw.errors import QueueFull
from localgw.protocols.anthropic import error_body
from localgw.server.streaming import EventStreamResponse, named_event


async def run(response) -> tuple[bytes, list]:
    sent, closed = [], []
    response.on_close = lambda: _note(closed)

    async def receive():
        await anyio.sleep_forever()

    async def send(message):
        sent.append(message)

    await response(scope={"type": "http"}, receive=receive, send=send)
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), closed


async def _note(closed):
    closed.append(True)


async def failing(items):
    for item in items:
        yield item
    raise QueueFull("too many")


async def test_chat_frames_end_with_done_even_after_an_error():
    body, closed = await run(EventStreamResponse(failing([{"a": 1}]), None))
    assert body == (b'data: {"a":1}\n\n'
                    b'data: {"error":{"message":"too many","type":"rate_limit_error",'
                    b'"param":null,"code":"queue_full"}}\n\ndata: [DONE]\n\n')
    assert closed == [True]


async def test_named_events_without_done():
    response = EventStreamResponse(
        failing([("message_start", {"type": "message_start"})]), None, encode=named_event,
        encode_error=lambda exc: named_event(("error", error_body(exc))), done=None)
    body, closed = await run(response)
    assert body == (b'event: message_start\ndata: {"type":"message_start"}\n\n'
                    b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error",'
                    b'"message":"too many"}}\n\n')
    assert closed == [True]
