"""The SSE response: chat's `data:`/`[DONE]` frames by default, named events for other formats."""

import asyncio
import json

import anyio
import pytest

from localgw.errors import QueueFull
from localgw.protocols.anthropic import error_body
from localgw.server.cancel import ClientGone
from localgw.server.streaming import EventStreamResponse, named_event, run_until_disconnect


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


async def test_an_error_before_the_first_item_is_an_error_response_not_a_stream():
    """`first` (a forwarded stream's wait for the upstream's first event) failing: the client
    gets that error's status and JSON body, no 200 and no frames; the source is still closed."""
    from localgw.errors import UpstreamBroken

    async def first_fails():
        raise UpstreamBroken("upstream u: sent garbage")

    sent, closed = [], []

    async def send(message):
        sent.append(message)

    response = EventStreamResponse(failing([{"a": 1}]), lambda: _note(closed), first=first_fails)
    await response({"type": "http", "path": "/v1/chat/completions"}, _disconnect_after(60), send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 502
    assert json.loads(sent[1]["body"])["error"]["message"] == "upstream u: sent garbage"
    assert b"data:" not in b"".join(m.get("body", b"") for m in sent)
    assert closed == [True]


async def test_after_first_come_the_head_and_then_the_frames():
    order = []

    async def first_ok():
        order.append("first")

    async def items():
        order.append("pulled")
        yield {"a": 1}

    sent = []

    async def send(message):
        order.append(message["type"])
        sent.append(message)

    response = EventStreamResponse(items(), lambda: _note([]), first=first_ok)
    await response({"type": "http"}, _disconnect_after(60), send)
    assert order[:4] == ["first", "http.response.start", "pulled", "http.response.body"]
    assert sent[0]["status"] == 200


def _disconnect_after(delay: float):
    async def receive():
        await asyncio.sleep(delay)
        return {"type": "http.disconnect"}
    return receive


async def test_the_work_s_result_and_its_own_error_come_back_as_they_are():
    assert await run_until_disconnect(_disconnect_after(60), _answer) == 42
    with pytest.raises(QueueFull):  # itself, not wrapped in a group
        await run_until_disconnect(_disconnect_after(60), _refuse)


async def test_a_client_that_leaves_cancels_the_work_before_clientgone():
    ended = []

    async def slow():
        try:
            await asyncio.sleep(60)
        finally:
            ended.append(True)

    with pytest.raises(ClientGone):
        await run_until_disconnect(_disconnect_after(0.01), slow)
    assert ended == [True]  # its cleanup ran before ClientGone reached the caller


async def test_a_stream_whose_client_leaves_stops_and_closes_its_source():
    pulled, closed = [], []

    async def endless():
        try:
            while True:
                pulled.append(1)
                yield {"n": len(pulled)}
                await asyncio.sleep(0.005)
        finally:
            closed.append("source")

    sent = []

    async def send(message):
        sent.append(message)

    response = EventStreamResponse(endless(), lambda: _note(closed))
    await asyncio.wait_for(response({"type": "http"}, _disconnect_after(0.05), send), 5)
    assert closed == ["source", True]          # the generator first, then on_close
    assert 1 < len(pulled) < 100
    assert not any(m.get("more_body") is False for m in sent)  # no [DONE] to a gone client


async def _answer():
    return 42


async def _refuse():
    raise QueueFull("too many")
