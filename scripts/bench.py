#!/usr/bin/env python3
"""Benchmark localgw, side by side with another OpenAI-compatible server or in-process llama-cpp-python.

    .venv/bin/python scripts/bench.py                  # starts localgw; vs. in-process llama-cpp-python
    .venv/bin/python scripts/bench.py --url http://127.0.0.1:8000 --model ID   # a running localgw
    .venv/bin/python scripts/bench.py --compare-url http://127.0.0.1:8080 --compare-name llama-server
    .venv/bin/python scripts/bench.py --json bench-results.json
    .venv/bin/python scripts/bench.py --upstream       # gateway → upstream vs direct (serve --upstream)
    .venv/bin/python scripts/bench.py --upstream --upstream-cpus 0 --threads 1   # upstream on CPU 0 only
    .venv/bin/python scripts/bench.py --upstream --synthetic   # the gateway's own cost (no model)
    .venv/bin/python scripts/bench.py --chat-app       # only: the chat app attached vs. not
    .venv/bin/python scripts/bench.py --first-answer 100   # only: the README's curl example, 100 seeds
    .venv/bin/python scripts/bench.py --spec-cases     # only: speculative decoding's cases, localgw
        # --spec off and auto (+ --side NAME=URL ...: llama-server with and without its look-ups)

Cases (issue 10): time to first token (TTFT) and decode tok/s of one stream after a short and after
a ~1,500-token prompt; 2 and 4 conversations taking turns (a ~500-token system note each, 6 turns,
round robin): TTFT of turn 1 and the median of turns 2-6; 4 concurrent streams: aggregate tok/s
and the slowest stream's time; one stream under a `json_schema` response format (decoding under
a grammar). The two sides alternate trial by trial and never generate at the
same time (on a small machine they would only slow each other); medians are reported. Temperature 0,
fixed max_tokens, a fresh nonce in every prompt: nothing is reused across trials except within a
conversation, which is what that case measures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localgw.defaults import embedded_model_path  # noqa: E402
from localgw.engine.threads import default_threads  # noqa: E402

DECODE_TOKENS = 200  # single stream
STREAM_TOKENS = 128  # each of the concurrent streams
TURN_TOKENS = 24  # each conversation turn
STREAMS = 4
REPEATS = 5  # trials per side of the single-stream and concurrent cases
CONV_REPEATS = 3  # trials per side of each conversation case (each gives n × 6 turns)
SETTLE = 0.5  # seconds between trials: llama.cpp's OpenMP threads spin a while after work
SHORT = "Write a long story about a dragon."


def notes(n: int) -> str:
    """About 20 tokens a note (SmolLM2's tokenizer): 74 make a ~1,500-token prompt, 25 a ~500-token
    system note."""
    return " ".join(f"Note {i}: the shipment {secrets.token_hex(3)} left dock {i % 7} on time."
                    for i in range(n))


def long_prompt() -> str:
    return f"Read these notes. {notes(74)} Now write a detailed report about the shipments."


def messages(content: str) -> list[dict]:
    # a fresh nonce first: no prompt prefix is reused across trials, on either side
    return [{"role": "user", "content": f"[{secrets.token_hex(4)}] {content}"}]


class ServerSide:
    """Any OpenAI-compatible server: localgw, llama.cpp's llama-server, ..."""
    concurrent = True

    def __init__(self, name: str, url: str, model: str | None = None):
        self.name, self.url = name, url.rstrip("/")
        # a fresh connection per request: a kept-alive one may be closed by the server while the
        # other side runs a trial, and the next request would then fail on it
        self.http = httpx.Client(base_url=self.url, timeout=600,
                                 limits=httpx.Limits(max_keepalive_connections=0))
        self.model = model or self.http.get("/v1/models").raise_for_status().json()["data"][0]["id"]

    def stream(self, msgs: list[dict], max_tokens: int = DECODE_TOKENS, **extra) -> dict:
        body = {"model": self.model, "messages": msgs, "temperature": 0, "max_tokens": max_tokens,
                "stream": True, "stream_options": {"include_usage": True}, **extra}
        start = time.perf_counter()
        stamps, text, usage = [], "", {}
        with self.http.stream("POST", "/v1/chat/completions", json=body) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                usage = chunk.get("usage") or usage
                for c in chunk.get("choices") or []:
                    if (c.get("delta") or {}).get("content"):
                        stamps.append(time.perf_counter())
                        text += c["delta"]["content"]
        details = usage.get("prompt_tokens_details") or {}  # None: the server does not say
        return timing(start, stamps, usage.get("completion_tokens", len(stamps)), text,
                      details.get("cached_tokens"), usage.get("prompt_tokens", 0))


class InProcess:
    """llama-cpp-python in this process: one sequence, one request at a time."""
    name, concurrent = "in-process llama-cpp-python", False

    def __init__(self, gguf: str, threads: int, n_ctx: int = 8192):
        import llama_cpp
        self.llm = llama_cpp.Llama(gguf, n_ctx=n_ctx, n_threads=threads,
                                   n_threads_batch=max(threads, default_threads()[1]),
                                   n_batch=512, n_ubatch=512, verbose=False)

    def stream(self, msgs: list[dict], max_tokens: int = DECODE_TOKENS) -> dict:
        start = time.perf_counter()
        stamps, text = [], ""
        for chunk in self.llm.create_chat_completion(msgs, temperature=0, max_tokens=max_tokens,
                                                     stream=True):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                stamps.append(time.perf_counter())
                text += piece
        return timing(start, stamps, len(stamps), text, None)


def timing(start: float, stamps: list[float], tokens: int, text: str, cached: int | None,
           prompt: int = 0) -> dict:
    ttft = stamps[0] - start if stamps else float("nan")
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else float("nan")
    return {"ttft_ms": ttft * 1000, "decode_tps": decode, "tokens": tokens, "text": text,
            "cached": cached, "prompt_tokens": prompt, "end": time.perf_counter() - start}


# ---- the cases: one trial each, on one side ------------------------------------------------------
def single_stream(side, content: str) -> dict:
    r = side.stream(messages(content), DECODE_TOKENS)
    return {"ttft_ms": r["ttft_ms"], "decode_tps": r["decode_tps"], "tokens": r["tokens"],
            "prompt_tokens": r["prompt_tokens"]}


def conversations(side, n: int, turns: int = 6) -> dict:
    """n chats, each opening with its own ~500-token system note, taking turns round robin."""
    chats = [[{"role": "system", "content": f"You are assistant {c}. {notes(25)}"}] for c in range(n)]
    first, later, cached = [], [], []
    for turn in range(turns):
        for msgs in chats:
            msgs.append({"role": "user", "content": f"Question {turn}: summarise note {turn}."})
            r = side.stream(msgs, TURN_TOKENS)
            msgs.append({"role": "assistant", "content": r["text"]})
            (first if turn == 0 else later).append(r["ttft_ms"])
            if turn and r["prompt_tokens"] and r["cached"] is not None:
                cached.append(100 * r["cached"] / r["prompt_tokens"])
    return {"turn1_ttft_ms": first, "later_ttft_ms": later, "later_cached_pct": cached}


def concurrent_streams(side, n: int = STREAMS) -> dict:
    def one(i):
        return side.stream(messages(f"Tell story number {i}."), STREAM_TOKENS)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    return {"aggregate_tps": sum(r["tokens"] for r in results) / wall,
            "slowest_s": max(r["end"] for r in results)}


STRUCTURED = {"type": "json_schema", "json_schema": {"name": "prices", "schema": {
    "type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
        "type": "object", "required": ["name", "price"],
        "properties": {"name": {"type": "string"}, "price": {"type": "number"}}}}}}}}


def structured_stream(side) -> dict:
    r = side.stream(messages("List fruits and their prices as JSON."), DECODE_TOKENS,
                    response_format=STRUCTURED)
    return {"ttft_ms": r["ttft_ms"], "decode_tps": r["decode_tps"]}


def interleaved(sides: list, trial, repeats: int) -> dict[str, list[dict]]:
    """The same trial on each side in turn, repeats times: drift on a busy machine hits all alike."""
    runs: dict = {s.name: [] for s in sides}
    for _ in range(repeats):
        for side in sides:
            time.sleep(SETTLE)
            runs[side.name].append(trial(side))
    return runs


def med(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def run_cases(sides: list, repeats: int) -> dict:
    """{"rows": {side: {measure: median}}, "trials": {case: {side: [trial, ...]}}}."""
    rows: dict = {s.name: {} for s in sides}
    trials: dict = {}
    for kind, make in (("short prompt", lambda: SHORT), ("~1,500-token prompt", long_prompt)):
        trials[kind] = interleaved(sides, lambda s: single_stream(s, make()), repeats)
        for name, rs in trials[kind].items():
            rows[name][f"{kind}: TTFT ms"] = med(r["ttft_ms"] for r in rs)
            rows[name][f"{kind}: decode tok/s"] = med(r["decode_tps"] for r in rs)
    for n in (2, 4):
        case = f"{n} conversations"
        trials[case] = interleaved(sides, lambda s: conversations(s, n), min(repeats, CONV_REPEATS))
        for name, rs in trials[case].items():
            rows[name][f"{case}: turn 1 TTFT ms"] = med(t for r in rs for t in r["turn1_ttft_ms"])
            rows[name][f"{case}: turns 2-6 TTFT ms"] = med(t for r in rs for t in r["later_ttft_ms"])
            rows[name][f"{case}: turns 2-6 cached %"] = med(p for r in rs for p in r["later_cached_pct"])
    able = [s for s in sides if s.concurrent]
    case = f"{STREAMS} concurrent streams"
    trials[case] = interleaved(able, concurrent_streams, repeats)
    for name, rs in trials[case].items():
        rows[name][f"{case}: aggregate tok/s"] = med(r["aggregate_tps"] for r in rs)
        rows[name][f"{case}: slowest s"] = med(r["slowest_s"] for r in rs)
    case = "json_schema stream"
    trials[case] = interleaved(able, structured_stream, repeats)
    for name, rs in trials[case].items():
        rows[name][f"{case}: TTFT ms"] = med(r["ttft_ms"] for r in rs)
        rows[name][f"{case}: decode tok/s"] = med(r["decode_tps"] for r in rs)
    return {"rows": rows, "trials": trials}


def report(r: dict) -> None:
    """One table: a column per side, and localgw ÷ the other where there are two."""
    from rich.console import Console
    from rich.table import Table

    names = list(r["rows"])
    t = Table(title=f"localgw bench: {r['model']}, {r['threads']} threads, medians of "
                    f"{r['repeats']} trials ({r['conv_repeats']} per conversation case), sides alternating")
    t.add_column("measure")
    for name in names:
        t.add_column(name, justify="right")
    if len(names) == 2:
        t.add_column(f"{names[0]} ÷ {names[1]}", justify="right")
    measures = list(dict.fromkeys(m for side in r["rows"].values() for m in side))
    for m in measures:
        vals = [r["rows"][n].get(m) for n in names]
        cells = ["-" if v is None or v != v else f"{v:.2f}" if m.endswith(" s") else f"{v:.1f}"
                 for v in vals]
        if len(names) == 2:
            a, b = vals
            cells.append(f"{a / b:.2f}×" if a and b and a == a and b == b and not m.endswith("%") else "")
        t.add_row(m, *cells)
    Console(width=120).print(t)
    print("lower is better for TTFT and the slowest stream; higher for tok/s", file=sys.stderr)


# ---- the README's first example (--first-answer) -----------------------------------------------
def first_answer(server: ServerSide, n: int) -> dict:
    """The README's curl request as a new user sends it (the model's own sampling defaults, no
    max_tokens), once per seed: how many ended by themselves, and the slowest answer."""
    rows = []
    for seed in range(n):
        body = {"model": server.model, "messages": [{"role": "user", "content": "Say hello"}],
                "seed": seed}
        start = time.perf_counter()
        answer = server.http.post("/v1/chat/completions", json=body).raise_for_status().json()
        rows.append({"seed": seed, "seconds": time.perf_counter() - start,
                     "tokens": answer["usage"]["completion_tokens"],
                     "finish_reason": answer["choices"][0]["finish_reason"]})
    return {"requests": n, "not_stop": sum(r["finish_reason"] != "stop" for r in rows),
            "over_5s": sum(r["seconds"] > 5 for r in rows),
            "slowest_s": max(r["seconds"] for r in rows),
            "median_tokens": med(r["tokens"] for r in rows), "rows": rows}


def report_first_answer(r: dict) -> None:
    f = r["first_answer"]
    print(f"README example, {f['requests']} seeds: {f['not_stop']} did not end with stop, "
          f"{f['over_5s']} took over 5 s; slowest {f['slowest_s']:.2f} s; median "
          f"{f['median_tokens']:.0f} tokens")


# ---- the chat app attached (--chat-app) ------------------------------------------------------
CHAT_APP_TOKENS = 400
EOS_BAN = {"2": -100}  # SmolLM2's <|im_end|>: every answer runs to CHAT_APP_TOKENS
CHAT_APP_PROMPT = "Write a long story about a dragon."


def chat_app_trial(url: str, model: str) -> dict:
    """One long answer streamed into the chat app (headless, in this process: it lays out and
    paints every update as on a terminal), timed as each content delta reaches the app."""
    import asyncio
    import tempfile

    from localgw.tui.app import ChatApp
    from localgw.tui.client import Delta, HttpChatClient
    from localgw.tui.history import ChatHistory

    stamps: list[float] = []

    class Timed(HttpChatClient):
        async def stream_chat(self, *args, **kwargs):
            async for event in super().stream_chat(*args, **kwargs):
                if isinstance(event, Delta) and event.content:
                    stamps.append(time.perf_counter())
                yield event

    async def run() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            history = ChatHistory(Path(tmp) / "chat.sqlite")
            client = Timed(url, extra_body={"logit_bias": EOS_BAN})
            app = ChatApp(client, history, model=model)
            try:
                async with app.run_test(size=(100, 40)) as pilot:
                    await pilot.pause()
                    app.conv.temperature, app.conv.max_tokens = 0.0, CHAT_APP_TOKENS  # as a user sets them
                    app.query_one("#prompt").value = messages(CHAT_APP_PROMPT)[0]["content"]
                    await pilot.press("enter")
                    await pilot.pause()
                    while app.generating:
                        await asyncio.sleep(0.05)
                    return app.last_stats
            finally:
                await client.aclose()
                history.close()

    start = time.perf_counter()
    status = asyncio.run(run())
    return timing(start, stamps, len(stamps), "", 0) | {"status": status}


def chat_app_case(server: ServerSide) -> dict:
    """Decode tok/s of the same long answer with the chat app attached and from this benchmark's
    client, alternating, medians of REPEATS each."""
    runs: dict = {"client": [], "app": []}
    for _ in range(REPEATS):
        time.sleep(SETTLE)
        runs["client"].append(server.stream(messages(CHAT_APP_PROMPT), CHAT_APP_TOKENS,
                                            logit_bias=EOS_BAN))
        time.sleep(SETTLE)
        runs["app"].append(chat_app_trial(server.url, server.model))
    out = {k: {"decode_tps": statistics.median(r["decode_tps"] for r in rs),
               "tokens": statistics.median(r["tokens"] for r in rs),
               "all_tps": [round(r["decode_tps"], 1) for r in rs]} for k, rs in runs.items()}
    out["ratio"] = out["app"]["decode_tps"] / out["client"]["decode_tps"]
    return out


def report_chat_app(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = r["chat_app"]
    t = Table(title=f"localgw bench --chat-app: {r['model']}, {CHAT_APP_TOKENS}-token answer, "
                    f"temperature 0, {r['threads']} threads")
    for col in ("measure", "benchmark client", "chat app attached", "ratio"):
        t.add_column(col)
    t.add_row("decode tok/s (median)", f"{c['client']['decode_tps']:.1f}", f"{c['app']['decode_tps']:.1f}",
              f"{c['ratio']:.2f}×")
    t.add_row("decode tok/s (each trial)", ", ".join(map(str, c["client"]["all_tps"])),
              ", ".join(map(str, c["app"]["all_tps"])), "")
    t.add_row("content deltas (median)", f"{c['client']['tokens']:.0f}", f"{c['app']['tokens']:.0f}", "")
    Console().print(t)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: str | None, threads: int, extra: tuple[str, ...] = (),
                 env: dict | None = None, cpus: set[int] | None = None
                 ) -> tuple[subprocess.Popen, str]:
    port = free_port()
    model = ["--model", gguf] if gguf else []
    proc = subprocess.Popen([sys.executable, "-m", "localgw", "serve", *model, "--port",
                             str(port), "--threads", str(threads), *extra], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True,
                            env=None if env is None else dict(os.environ, **env),
                            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))
    ready = threading.Event()

    def pump():
        for line in proc.stderr:
            if "localgw listening on" in line:
                ready.set()
    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120):
        proc.kill()
        sys.exit("bench: the server did not start")
    return proc, f"http://127.0.0.1:{port}"


SAME_PROMPT = [{"role": "user", "content": "Say hello."}]
TTFT_PAIRS_PER_REPEAT = 60  # the effect is ~2 ms and paired differences here spread over
# ~9 ms (IQR): a median of 100 of them is uncertain by ~1 ms, of 300 by ~0.5 ms


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux); None where /proc does not say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


SYNTHETIC_INTERVAL = 0.01  # seconds between the synthetic upstream's chunks (100 "tok/s")


def start_synthetic_upstream(cpus: set[int] | None = None) -> tuple[subprocess.Popen, str]:
    """scripts/synthetic_upstream.py on a free port: an upstream with no model."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "synthetic_upstream.py"),
                             str(port), "--interval", str(SYNTHETIC_INTERVAL)],
                            stdout=subprocess.PIPE, text=True,
                            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))
    if "ready" not in (proc.stdout.readline() or ""):
        proc.kill()
        sys.exit("bench: the synthetic upstream did not start")
    return proc, f"http://127.0.0.1:{port}"


def upstream_overhead(gguf: str, threads: int, repeats: int = REPEATS,
                      upstream_cpus: set[int] | None = None, synthetic: bool = False) -> dict:
    """TTFT and decode tok/s through a gateway (`serve --upstream`) vs straight to its upstream.

    Two localgw servers: the upstream decodes the model; the gateway (its own empty home, so it
    holds only the idle embedded default) forwards to it. Direct and gateway trials alternate
    (which goes first alternates too) and never overlap; TTFT pairs (TTFT_PAIRS_PER_REPEAT per
    repeat) use a 4-token answer, decode pairs DECODE_TOKENS.

    TTFT pairs send the same request every time (no nonce), so the upstream answers from its
    prompt cache: its own time is then ~30 ms and steady instead of a ~20-token prefill that
    moves by ±10 ms, and the difference left is the gateway's. (With a fresh prompt each time the
    median of 100 differences was still uncertain by ±2 ms.)

    `upstream_cpus`: the upstream runs on these CPUs, the gateway and this client on the others,
    as when the upstream is a machine of its own; otherwise all share every CPU, and each chunk
    the gateway forwards takes CPU from the decode it measures.

    `synthetic`: the upstream is scripts/synthetic_upstream.py (no model: its first token at once,
    the next ones SYNTHETIC_INTERVAL apart), so the difference is the gateway's own work alone,
    without the waits for a core that a decoding upstream on the same machine adds.
    """
    import tempfile

    others = None
    if upstream_cpus:
        others = set(os.sched_getaffinity(0)) - upstream_cpus
        if not others:
            sys.exit("bench: --upstream-cpus must leave a CPU for the gateway and the client")
        os.sched_setaffinity(0, others)
    if synthetic:
        up_proc, up_url = start_synthetic_upstream(upstream_cpus)
    else:
        up_proc, up_url = start_server(gguf, threads, cpus=upstream_cpus)
    home = tempfile.mkdtemp(prefix="localgw-bench-gateway-")
    gw_proc = None
    try:
        gw_proc, gw_url = start_server(None, threads, ("--upstream", f"up={up_url}"),
                                       env={"LOCALGW_HOME": home}, cpus=others)
        model = "synthetic" if synthetic else Path(gguf).stem
        sides = {"direct": ServerSide("direct", up_url, model),
                 "gateway": ServerSide("gateway", gw_url, model)}
        for side in sides.values():
            side.stream(messages("warm up"), 8)
        pairs = TTFT_PAIRS_PER_REPEAT * repeats
        ttft: dict = {"direct": [], "gateway": []}
        for i in range(pairs):
            for name in list(sides)[::1 if i % 2 else -1]:
                time.sleep(SETTLE / 5)
                ttft[name].append(sides[name].stream(SAME_PROMPT, 4)["ttft_ms"])
        decode: dict = {"direct": [], "gateway": []}
        gateway_cpu: list[float] = []  # the gateway's CPU seconds per token it forwarded
        for i in range(repeats):
            for name in list(sides)[::1 if i % 2 else -1]:
                time.sleep(SETTLE)
                before = cpu_seconds(gw_proc.pid)
                r = sides[name].stream(messages("Write a long story about a dragon."))
                after = cpu_seconds(gw_proc.pid)
                decode[name].append(r["decode_tps"])
                if name == "gateway" and before is not None and after is not None:
                    gateway_cpu.append((after - before) / max(r["tokens"], 1))
    finally:
        for proc in (gw_proc, up_proc):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    out = {name: {"ttft_ms": statistics.median(ttft[name]),
                  "decode_tps": statistics.median(decode[name])} for name in ttft}
    diffs = [g - d for g, d in zip(ttft["gateway"], ttft["direct"])]
    quartiles = statistics.quantiles(diffs, n=4)
    out["ttft_overhead_ms"] = statistics.median(diffs)
    out["ttft_overhead_iqr_ms"] = [quartiles[0], quartiles[2]]
    out["decode_ratio"] = out["gateway"]["decode_tps"] / out["direct"]["decode_tps"]
    ratios = sorted(g / d for g, d in zip(decode["gateway"], decode["direct"]))
    out["decode_paired_ratios"] = ratios
    out["gateway_cpu_us_per_token"] = statistics.median(gateway_cpu) * 1e6 if gateway_cpu else None
    out["pairs"] = {"ttft": pairs, "decode": repeats, "decode_tokens": DECODE_TOKENS}
    out["upstream_cpus"] = sorted(upstream_cpus) if upstream_cpus else None
    out["synthetic"] = synthetic
    return out


def report_upstream(model: str, r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    where = (f"; upstream on CPU {','.join(map(str, r['upstream_cpus']))}, gateway and client on "
             "the others" if r.get("upstream_cpus") else "")
    t = Table(title=f"localgw bench: through a gateway vs direct to the upstream ({model}{where})")
    for col in ("measure", "direct", "through the gateway", "overhead / ratio"):
        t.add_column(col)
    low, high = r["ttft_overhead_iqr_ms"]
    t.add_row("TTFT ms (median)", f"{r['direct']['ttft_ms']:.1f}", f"{r['gateway']['ttft_ms']:.1f}",
              f"{r['ttft_overhead_ms']:+.2f} ms (median of {r['pairs']['ttft']} paired differences; "
              f"IQR {low:+.1f} to {high:+.1f})")
    ratios = r["decode_paired_ratios"]
    t.add_row("decode tok/s (median)", f"{r['direct']['decode_tps']:.1f}",
              f"{r['gateway']['decode_tps']:.1f}",
              f"{r['decode_ratio']:.3f}× (paired ratios: median {statistics.median(ratios):.3f}, "
              f"{ratios[0]:.3f} to {ratios[-1]:.3f})")
    if r.get("gateway_cpu_us_per_token") is not None:
        t.add_row("gateway CPU per token (median)", "", f"{r['gateway_cpu_us_per_token']:.0f} µs", "")
    Console(width=120).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running localgw (default: start one)")
    ap.add_argument("--model", help="model id on that server (default: the file's stem)")
    ap.add_argument("--gguf", help="GGUF file to serve and for the in-process reference "
                                   "(default: SmolLM2)")
    ap.add_argument("--threads", type=int, default=default_threads()[0])
    ap.add_argument("--compare-url", help="another OpenAI-compatible server to run the same cases "
                                          "against (instead of in-process llama-cpp-python)")
    ap.add_argument("--compare-model", help="model id there (default: the first in /v1/models)")
    ap.add_argument("--compare-name", default="other server", help="its column's name")
    ap.add_argument("--no-in-process", action="store_true",
                    help="without --compare-url: localgw alone, no in-process reference")
    ap.add_argument("--repeats", type=int, default=REPEATS,
                    help=f"trials per side of the single-stream and concurrent cases ({REPEATS}); "
                         f"with --upstream, decode pairs and {TTFT_PAIRS_PER_REPEAT}× as many TTFT pairs")
    ap.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    ap.add_argument("--upstream", action="store_true",
                    help="only the upstream case: a gateway forwarding to a second server vs direct")
    ap.add_argument("--upstream-cpus", metavar="LIST",
                    help="with --upstream: run the upstream on these CPUs (e.g. 0 or 0,1) and the "
                         "gateway and client on the others, as if the upstream were another machine")
    ap.add_argument("--synthetic", action="store_true",
                    help="with --upstream: the upstream is scripts/synthetic_upstream.py (no model), "
                         "so the difference measured is the gateway's own work")
    ap.add_argument("--chat-app", action="store_true",
                    help="only: decode tok/s of a long answer with the chat app attached vs. without")
    ap.add_argument("--spec-cases", action="store_true",
                    help="only: speculative decoding's cases (scripts/bench_spec.py), on localgw "
                         "--spec off and --spec auto (or --url) and every --side")
    ap.add_argument("--side", action="append", default=[], metavar="NAME=URL",
                    help="with --spec-cases: another OpenAI-compatible server (repeatable)")
    ap.add_argument("--first-answer", type=int, metavar="N",
                    help="only: the README's curl example with seeds 0..N-1 (looping replies)")
    args = ap.parse_args()
    gguf = args.gguf or str(embedded_model_path())
    model = args.model or Path(gguf).stem
    if args.upstream:
        cpus = {int(c) for c in args.upstream_cpus.split(",")} if args.upstream_cpus else None
        results = {"model": model, "threads": args.threads, "cpus": os.cpu_count(),
                   "upstream": upstream_overhead(gguf, args.threads, args.repeats, cpus,
                                                 synthetic=args.synthetic)}
        report_upstream("synthetic upstream" if args.synthetic else model, results["upstream"])
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return
    if args.spec_cases:
        return spec_cases(args, gguf, model)
    proc = None
    if not args.url:
        proc, args.url = start_server(gguf, args.threads)
    results: dict = {"model": model, "threads": args.threads, "cpus": os.cpu_count(),
                     "repeats": args.repeats, "conv_repeats": min(args.repeats, CONV_REPEATS),
                     "decode_tokens": DECODE_TOKENS, "stream_tokens": STREAM_TOKENS,
                     "turn_tokens": TURN_TOKENS}
    try:
        server = ServerSide("localgw", args.url, model)
        server.stream(messages("warm up"), 8)
        if args.chat_app:
            results["chat_app"] = chat_app_case(server)
        elif args.first_answer:
            results["first_answer"] = first_answer(server, args.first_answer)
        else:
            sides = [server]
            if args.compare_url:
                sides.append(ServerSide(args.compare_name, args.compare_url, args.compare_model))
                results["compare"] = {"name": args.compare_name, "url": args.compare_url,
                                      "model": sides[1].model}
            elif not args.no_in_process:
                sides.append(InProcess(gguf, args.threads))  # loaded beside the server, never
                # decoding with it
            for side in sides[1:]:
                side.stream(messages("warm up"), 8)
            results |= run_cases(sides, args.repeats)
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
    if args.chat_app:
        report_chat_app(results)
    elif args.first_answer:
        report_first_answer(results)
    else:
        report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def spec_cases(args, gguf: str, model: str) -> None:
    """--spec-cases: localgw with speculation off and auto (or the server at --url) and the
    --side servers, the cases of scripts/bench_spec.py, sides alternating."""
    from bench_spec import run_spec_cases

    procs, sides = [], []
    try:
        if args.url:
            sides.append(ServerSide("localgw", args.url, model))
        else:
            for mode in ("off", "auto"):
                proc, url = start_server(gguf, args.threads, ("--spec", mode))
                procs.append(proc)
                sides.append(ServerSide(f"localgw {mode}", url, model))
        if args.compare_url:
            sides.append(ServerSide(args.compare_name, args.compare_url, args.compare_model))
        for item in args.side:
            name, _, url = item.partition("=")
            sides.append(ServerSide(name, url))
        for side in sides:
            side.stream(messages("warm up"), 8)
        results = {"model": model, "threads": args.threads, "cpus": os.cpu_count(),
                   "repeats": args.repeats, "conv_repeats": 0}
        results |= run_spec_cases(sides, args.repeats, interleaved, med)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
