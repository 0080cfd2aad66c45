"""An OpenAI-style upstream that misbehaves on purpose, chosen by the requested model id.

A real HTTP server on a loopback port (ThreadingHTTPServer in a thread), so the gateway's httpx
client meets real sockets: a connection dropped mid-chunk, a status line that never comes, a
500 with a body, bytes that are not SSE. It records every request (path, headers, body) for the
tests to inspect.

Models (anything else answers like `fault/ok`):
- `fault/ok`: a short, valid answer (streamed or not);
- `fault/dies`: two chunks, then the connection is cut mid-body (chunked encoding left open);
- `fault/hangs`: reads the request and never answers (until `stop()`);
- `fault/500`: HTTP 500 with an OpenAI error body;
- `fault/garbage`: 200 text/event-stream whose first event is not SSE;
- `fault/garbage-later`: one valid chunk, then bytes that are not SSE;
- `fault/slow`: a valid answer after SLOW seconds (for max_concurrency).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW = 1.5
ERROR_MESSAGE = "the GPU caught fire"


def _chunk(model: str, delta: dict, finish_reason=None) -> bytes:
    data = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    return f"data: {json.dumps(data)}\n\n".encode()


class FaultUpstream:
    def __init__(self, models: list[str]):
        self.models = models
        self.requests: list[dict] = []
        self.released = threading.Event()
        owner = self

        class Handler(_Handler):
            upstream = owner

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def last(self, model: str) -> dict:
        return [r for r in self.requests if r["body"].get("model") == model][-1]

    def stop(self) -> None:
        """Stop listening: new connections are refused; hanging requests are let go."""
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a gateway that hangs up on us is what several tests do on purpose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: FaultUpstream

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send_json(self, status: int, data: dict) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "faults"}
                for m in self.upstream.models]})
        else:
            self._send_json(404, {"error": {"message": f"no {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.upstream.requests.append({"path": self.path, "body": body,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}})
        model = body.get("model", "")
        stream = body.get("stream") is True
        if model == "fault/hangs":
            self.upstream.released.wait(60)
            self.close_connection = True
            return
        if model == "fault/500":
            self._send_json(500, {"error": {"message": ERROR_MESSAGE, "type": "server_error"}})
            return
        if model == "fault/slow":
            time.sleep(SLOW)
        if model == "fault/dies":
            self._start_chunked()
            self._write_chunk(_chunk(model, {"role": "assistant", "content": ""}))
            self._write_chunk(_chunk(model, {"content": "Hel"}))
            time.sleep(0.1)
            self.close_connection = True  # no terminating chunk: the body is cut short
            return
        if model in ("fault/garbage", "fault/garbage-later"):
            self._start_chunked()
            if model == "fault/garbage-later":
                self._write_chunk(_chunk(model, {"role": "assistant", "content": ""}))
                time.sleep(0.05)
            self._write_chunk(b"<html>this is not an event stream</html>\n\n")
            self._write_chunk(b"")
            return
        if stream:
            self._start_chunked()
            for delta, finish in (({"role": "assistant", "content": ""}, None),
                                  ({"content": "ok"}, None), ({}, "stop")):
                self._write_chunk(_chunk(model, delta, finish))
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
            return
        self._send_json(200, {"id": "chatcmpl-fault", "object": "chat.completion", "created": 0,
                              "model": model, "choices": [{
                                  "index": 0, "message": {"role": "assistant", "content": "ok"},
                                  "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                        "total_tokens": 2}})
