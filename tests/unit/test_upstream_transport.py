"""The upstreams' pooled HTTP transport, against a real socket server in the test's loop."""

import asyncio

import httpx
import pytest

from localgw.upstreams.config import UpstreamConfig
from localgw.upstreams.client import UpstreamClient


class Server:
    """A loopback HTTP/1.1 server that records each `data_received` of the connection."""

    def __init__(self, answer):
        self.answer = answer  # async (reader, writer, head, body) -> None
        self.reads: list[bytes] = []
        self.connections = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                await self.answer(reader, writer, head, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def upstream_transport(url: str) -> httpx.AsyncBaseTransport:
    """The transport an upstream at `url` forwards through."""
    return UpstreamClient(UpstreamConfig("u", url.rstrip("/") + "/v1")).transport


def client(url: str, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=upstream_transport(url), **kwargs)


async def ok(reader, writer, head, body):
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


def test_plain_http_and_tls_upstreams_both_use_httpx_own_transport():
    for url in ("http://gpu:8000/v1", "https://cloud.example/v1"):
        assert isinstance(upstream_transport(url), httpx.AsyncHTTPTransport)


async def test_a_connection_the_upstream_closed_while_idle_is_replaced():
    async def answer_then_close(reader, writer, head, body):
        await ok(reader, writer, head, body)
        await writer.drain()
        writer.close()

    async with Server(answer_then_close) as server, client(server.url) as c:
        for i in range(3):
            resp = await c.post("echo", content=b"%d" % i)
            assert resp.content == b"%d" % i
            await asyncio.sleep(0.05)  # the close reaches the idle pooled connection
        assert server.connections == 3


async def test_a_kept_alive_connection_is_reused():
    async with Server(ok) as server, client(server.url) as c:
        for i in range(3):
            assert (await c.post("echo", content=b"x")).content == b"x"
        assert server.connections == 1


async def test_no_data_within_the_read_timeout_is_httpx_read_timeout():
    async def silent(reader, writer, head, body):
        await asyncio.sleep(5)

    async with Server(silent) as server, client(server.url, timeout=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post("hang", content=b"x")


async def test_connection_refused_is_httpx_connect_error():
    async with Server(ok) as server:
        url = server.url
    await asyncio.sleep(0.05)
    async with client(url) as c:
        with pytest.raises(httpx.ConnectError):
            await c.post("x", content=b"x")


async def test_a_large_streamed_body_arrives_whole_to_a_slow_reader():
    blob = bytes(range(256)) * 4096  # 1 MiB

    async def big(reader, writer, head, body):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(blob))
        for i in range(0, len(blob), 65536):
            writer.write(blob[i:i + 65536])
            await writer.drain()

    async with Server(big) as server, client(server.url) as c:
        async with c.stream("POST", "big", content=b"x") as resp:
            got = bytearray()
            async for piece in resp.aiter_raw():
                got += piece
                await asyncio.sleep(0)  # a slow reader: the buffer fills up
        assert bytes(got) == blob


async def test_the_upstream_dropping_the_connection_mid_body_is_an_error_not_a_hang():
    async def cut(reader, writer, head, body):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.transport.abort()

    async with Server(cut) as server, client(server.url) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("cut", content=b"x")


async def test_a_cookie_an_upstream_sets_never_rides_on_the_next_request():
    heads = []

    async def sets_cookie(reader, writer, head, body):
        heads.append(head.lower())
        writer.write(b"HTTP/1.1 200 OK\r\nset-cookie: session=user-a; Path=/\r\n"
                     b"content-length: 2\r\n\r\nok")

    async with Server(sets_cookie) as server:
        upstream = UpstreamClient(UpstreamConfig("u", server.url.rstrip("/") + "/v1"))
        try:
            for _ in range(2):
                resp = await upstream.http.post("chat/completions", content=b"{}")
                assert resp.status_code == 200 and "set-cookie" in resp.headers
        finally:
            await upstream.http.aclose()
    assert len(heads) == 2 and not any(b"cookie:" in h for h in heads)
    assert not upstream.http.cookies


async def test_a_forwarded_request_carries_its_key_and_id_and_no_cookie(monkeypatch):
    """Forwarded requests go to the transport without httpx's client layer: they still carry
    the upstream's own key, the request id and the right Accept, to the right URL, and no
    cookie that an earlier answer set."""
    heads = []

    async def sets_cookie(reader, writer, head, body):
        heads.append(head.lower())
        writer.write(b"HTTP/1.1 200 OK\r\nset-cookie: session=user-a; Path=/\r\n"
                     b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}")

    monkeypatch.setenv("FORWARD_TEST_KEY", "sk-upstream")
    async with Server(sets_cookie) as server:
        upstream = UpstreamClient(UpstreamConfig("u", server.url.rstrip("/") + "/v1",
                                                 api_key_env="FORWARD_TEST_KEY"))
        try:
            for stream in (True, False):
                resp = await upstream.open("chat/completions", b'{"model":"m"}', stream=stream,
                                           request_id="req_abc" if stream else None)
                assert resp.status_code == 200 and await resp.aread() == b"{}"
                await resp.aclose()
        finally:
            await upstream.http.aclose()
    first, second = heads
    assert first.startswith(b"post /v1/chat/completions http/1.1")
    for head in heads:
        assert b"authorization: bearer sk-upstream" in head
        assert b"content-type: application/json" in head and b"cookie:" not in head
    assert b"accept: text/event-stream" in first and b"x-request-id: req_abc" in first
    assert b"accept: application/json" in second and b"x-request-id" not in second


async def test_bytes_after_a_whole_response_spoil_only_the_next_request_on_that_connection():
    """An upstream that writes past its answer's end (as if answering twice): the answer itself
    arrives whole. httpx keeps the extra bytes with the pooled connection, so the next request
    on it fails as a protocol error (at once, not a hang) and the connection is dropped."""
    async def ok_then_junk(reader, writer, head, body):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokJUNK")

    async with Server(ok_then_junk) as server, client(server.url) as c:
        async with c.stream("POST", "junk", content=b"x") as resp:
            await asyncio.sleep(0.05)  # the junk arrives before the body is read
            assert await resp.aread() == b"ok"
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("junk", content=b"x")
        assert (await c.post("junk", content=b"x")).content == b"ok"
        assert server.connections == 2
