"""A synthetic OpenAI-compatible upstream for `bench.py --upstream --synthetic`: no model.

It answers /v1/models (one model, "synthetic") and streams chat completions at once: a role chunk
and the first content chunk immediately, then `max_tokens - 1` more content chunks INTERVAL
seconds apart, a finish chunk, a usage chunk and [DONE] (chunked transfer encoding, kept-alive
connections, TCP_NODELAY). A request with `"stream": false` gets the whole completion as one JSON
body at once. Its own work is a few tens of microseconds a request, so what a gateway in front of
it adds is the gateway's own.

`--stamp` adds `"sent"` to each content chunk: `time.perf_counter()` as the chunk is written (on
Linux a clock every process on the machine shares), so a client can tell how long each chunk took
to reach it.

    python scripts/synthetic_upstream.py PORT [--interval 0.01] [--stamp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time

MODELS = json.dumps({"object": "list", "data": [{"id": "synthetic", "object": "model",
                                                 "created": 0, "owned_by": "bench"}]}).encode()


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None,
           stamp: bool = False) -> bytes:
    data = {"id": "chatcmpl-synthetic", "object": "chat.completion.chunk", "created": 0,
            "model": "synthetic", "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage is not None:
        data = dict(data, choices=[], usage=usage)
    if stamp:
        data["sent"] = time.perf_counter()
    event = b"data: " + json.dumps(data).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _completion(n: int) -> bytes:
    body = json.dumps({
        "id": "chatcmpl-synthetic", "object": "chat.completion", "created": 0, "model": "synthetic",
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " word" * n},
                     "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10}}).encode()
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body))


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, interval: float,
                 stamp: bool):
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                           if line.lower().startswith("content-length:")), 0)
            body = json.loads(await reader.readexactly(length)) if length else {}
            if lines[0].startswith("GET"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(MODELS), MODELS))
                continue
            n = max(int(body.get("max_tokens") or 16), 1)
            if body.get("stream") is not True:
                writer.write(_completion(n))
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                         b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                         + _chunk({"role": "assistant", "content": ""}) + _chunk({"content": " word"}, stamp=stamp))
            for _ in range(n - 1):
                await writer.drain()
                await asyncio.sleep(interval)
                writer.write(_chunk({"content": " word"}, stamp=stamp))
            writer.write(_chunk({}, "length") + _chunk({}, usage={
                "prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10})
                + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int, interval: float, stamp: bool = False) -> None:
    server = await asyncio.start_server(lambda r, w: _serve(r, w, interval, stamp), "127.0.0.1", port)
    print("synthetic upstream ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--interval", type=float, default=0.01, help="seconds between content chunks")
    ap.add_argument("--stamp", action="store_true",
                    help="put the time each content chunk is written in it (\"sent\")")
    args = ap.parse_args()
    asyncio.run(main(args.port, args.interval, args.stamp))
