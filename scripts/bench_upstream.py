#!/usr/bin/env python3
"""What a gateway (`serve --upstream`) adds to a forwarded request, against its upstream direct.

    .venv/bin/python scripts/bench_upstream.py [--rounds 150] [--trials 3] [--json FILE]
    .venv/bin/python scripts/bench_upstream.py --client httpx   # as bench.py's client

A synthetic upstream (scripts/synthetic_upstream.py --stamp: no model, each content chunk
stamped with the time it was written) and a `localgw serve --upstream` gateway in front of it; the
client speaks HTTP/1.1 over one kept-alive socket to each (`--client httpx`: a fresh httpx
connection per request instead, as scripts/bench.py does).

Each round sends both sides, one after the other (which goes first alternates), one of each
request, a short pause before each:
- `json`: a non-streamed chat completion of 4 tokens: time to its last byte;
- `stream`: a streamed one of STREAM_CHUNKS content chunks INTERVAL apart: time to the first
  content event (`ttft`), and each later content chunk's delay from the upstream's write to this
  client's read (`chunk`; the clock, `perf_counter`, is the machine's monotonic one);
- `models`: GET /v1/models, a small JSON answer the gateway makes itself.
The gateway's CPU time (from /proc) is summed per kind of request. A trial's figure is the
median over its rounds; the gateway's overhead is the median of the per-round differences.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402  (free_port, start_server, cpu_seconds)

INTERVAL = 0.01      # seconds between the synthetic upstream's chunks
STREAM_CHUNKS = 6    # content chunks of a streamed request
JSON_TOKENS = 4
PAUSE = 0.02         # seconds before each request


def start_upstream() -> tuple[subprocess.Popen, int]:
    """scripts/synthetic_upstream.py --stamp on a free port."""
    port = bench.free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "synthetic_upstream.py"),
                             str(port), "--interval", str(INTERVAL), "--stamp"],
                            stdout=subprocess.PIPE, text=True)
    if "ready" not in (proc.stdout.readline() or ""):
        proc.kill()
        sys.exit("bench: the synthetic upstream did not start")
    return proc, port


SENT = re.compile(rb'"sent":\s*([0-9.]+)')


class Side:
    """One server, one kept-alive HTTP/1.1 connection to it (or httpx, a connection a request)."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen | None = None,
                 use_httpx: bool = False):
        self.name, self.port, self.proc = name, port, proc
        self.sock: socket.socket | None = None
        self.http = None
        if use_httpx:
            import httpx
            self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                                     limits=httpx.Limits(max_keepalive_connections=0))

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[float, bytes, list]:
        """(start, body, [(end offset in body, arrival time) per read])."""
        if self.http is not None:
            return self._request_httpx(method, path, body)
        if self.sock is None:
            self._connect()
        head = (f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        start = time.perf_counter()
        self.sock.sendall(head + body)
        data, reads, length, chunked = b"", [], None, False
        while True:
            piece = self.sock.recv(65536)
            now = time.perf_counter()
            if not piece:
                self.sock = None
                raise ConnectionError(f"{self.name} closed the connection")
            data += piece
            reads.append((len(data), now))
            if length is None and not chunked and b"\r\n\r\n" in data:
                top = data.split(b"\r\n\r\n", 1)[0].lower()
                chunked = b"transfer-encoding: chunked" in top
                found = re.search(rb"content-length: *(\d+)", top)
                length = len(top) + 4 + int(found.group(1)) if found else None
                if not chunked and length is None:
                    raise ConnectionError(f"{self.name}: an answer without a length")
            if (chunked and data.endswith(b"\r\n0\r\n\r\n")) or (length is not None and len(data) >= length):
                return start, data, reads


    def _request_httpx(self, method: str, path: str, body: bytes) -> tuple[float, bytes, list]:
        data, reads = b"", []
        start = time.perf_counter()
        with self.http.stream(method, path, content=body,
                              headers={"content-type": "application/json"}) as resp:
            for piece in resp.iter_raw():
                data += piece
                reads.append((len(data), time.perf_counter()))
        return start, data, reads


def one_round(side: Side) -> dict:
    """One request of each kind on `side`: its times (ms) and its gateway's CPU (s) per kind."""
    out: dict = {}
    chat = {"model": "synthetic", "messages": [{"role": "user", "content": "Say hello."}]}
    for kind, method, path, body in (
            ("json", "POST", "/v1/chat/completions", dict(chat, max_tokens=JSON_TOKENS)),
            ("stream", "POST", "/v1/chat/completions", dict(chat, max_tokens=STREAM_CHUNKS, stream=True)),
            ("models", "GET", "/v1/models", None)):
        time.sleep(PAUSE)
        cpu = bench.cpu_seconds(side.proc.pid) if side.proc else 0.0
        start, data, reads = side.request(method, path, json.dumps(body).encode() if body else b"")
        out[f"cpu_{kind}"] = (bench.cpu_seconds(side.proc.pid) - cpu) if side.proc else 0.0
        if kind != "stream":
            out[kind] = (reads[-1][1] - start) * 1000
            continue
        ends = [end for end, _ in reads]
        arrivals = []
        for m in SENT.finditer(data):
            read = bisect.bisect_left(ends, data.index(b"\n\n", m.end()) + 2)
            arrivals.append((float(m.group(1)), reads[read][1]))
        if len(arrivals) != STREAM_CHUNKS:
            raise RuntimeError(f"{side.name}: {len(arrivals)} stamped chunks, not {STREAM_CHUNKS}")
        out["ttft"] = (arrivals[0][1] - start) * 1000
        out["chunk"] = statistics.median((got - sent) * 1000 for sent, got in arrivals[1:])
    return out


MEASURES = ("json", "ttft", "chunk", "models")


def trial(sides: list[Side], rounds: int) -> dict:
    rows: dict[str, list[dict]] = {side.name: [] for side in sides}
    for r in range(rounds):
        k = r % len(sides)
        for side in sides[k:] + sides[:k]:
            rows[side.name].append(one_round(side))
    result = {}
    for name, got in rows.items():
        result[name] = {m: statistics.median(g[m] for g in got) for m in MEASURES}
        result[name].update({f"cpu_{kind}_ms": sum(g[f"cpu_{kind}"] for g in got) / rounds * 1000
                             for kind in ("json", "stream", "models")})
        if name != "direct":
            result[name]["overhead"] = {m: statistics.median(
                g[m] - d[m] for g, d in zip(got, rows["direct"])) for m in MEASURES}
    return result


def report(trials: list[dict]) -> None:
    print(f"\n{'side':16}{'json ms':>10}{'ttft ms':>10}{'chunk ms':>10}{'models ms':>11}"
          f"{'cpu json':>10}{'cpu stream':>11}{'cpu models':>11}   overhead (json/ttft/chunk/models)")
    for i, result in enumerate(trials, 1):
        print(f"-- trial {i}")
        for name, r in result.items():
            vs = r.get("overhead")
            print(f"{name:16}{r['json']:10.3f}{r['ttft']:10.3f}{r['chunk']:10.3f}{r['models']:11.3f}"
                  f"{r['cpu_json_ms']:10.2f}{r['cpu_stream_ms']:11.2f}{r['cpu_models_ms']:11.2f}   "
                  + (" / ".join(f"{vs[m]:+.3f}" for m in MEASURES) if vs else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=150, help="rounds per trial")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--client", choices=("socket", "httpx"), default="socket",
                    help="socket: one kept-alive connection per side; httpx: a new one a request")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    procs = []
    try:
        up_proc, up_port = start_upstream()
        procs.append(up_proc)
        use_httpx = args.client == "httpx"
        sides = [Side("direct", up_port, use_httpx=use_httpx)]
        home = tempfile.mkdtemp(prefix="localgw-bench-gateway-")
        proc, url = bench.start_server(None, 1, ("--upstream", f"up=http://127.0.0.1:{up_port}"),
                                       env={"LOCALGW_HOME": home})
        procs.append(proc)
        sides.append(Side("gateway", int(url.rsplit(":", 1)[1]), proc, use_httpx))
        for side in sides:  # warm up: connections, imports, the first request's paths
            for _ in range(5):
                one_round(side)
        trials = [trial(sides, args.rounds) for _ in range(args.trials)]
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)
    report(trials)
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "client": args.client,
                                               "trials": trials}, indent=1))


if __name__ == "__main__":
    main()
