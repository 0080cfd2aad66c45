#!/usr/bin/env python3
"""Benchmark localgw against in-process llama-cpp-python on the same model and thread count.

    .venv/bin/python scripts/bench.py                 # starts its own server on the default model
    .venv/bin/python scripts/bench.py --url http://127.0.0.1:8000 --model ID --gguf PATH
    .venv/bin/python scripts/bench.py --json bench-results.json
    .venv/bin/python scripts/bench.py --upstream      # gateway → upstream vs direct (serve --upstream)
    .venv/bin/python scripts/bench.py --chat-app      # only: the chat app attached vs. not

Measures time to first token (TTFT) and decode tokens/s for a short and a ~1,500-token prompt,
TTFT on each turn of a 6-turn conversation, and 4 concurrent clients. Server and in-process
trials alternate, 5 of each, medians reported; they never decode at the same time (on a small
machine they would only slow each other).
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

DECODE_TOKENS = 200
REPEATS = 5
SETTLE = 0.5  # seconds between trials: llama.cpp's OpenMP threads spin a while after work


def long_prompt() -> str:
    facts = " ".join(f"Note {i}: the shipment {secrets.token_hex(3)} left dock {i % 7} on time."
                     for i in range(100))
    return f"Read these notes. {facts} Now write a detailed report about the shipments."


def messages(content: str) -> list[dict]:
    # a fresh nonce first: no prompt prefix is reused across trials, on either side
    return [{"role": "user", "content": f"[{secrets.token_hex(4)}] {content}"}]


class ServerSide:
    def __init__(self, url: str, model: str):
        self.url, self.model = url.rstrip("/"), model
        self.http = httpx.Client(base_url=self.url, timeout=600)

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
                for c in chunk["choices"]:
                    if c["delta"].get("content"):
                        stamps.append(time.perf_counter())
                        text += c["delta"]["content"]
        return timing(start, stamps, usage.get("completion_tokens", len(stamps)), text,
                      usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))


class InProcess:
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
        return timing(start, stamps, len(stamps), text, 0)


def timing(start: float, stamps: list[float], tokens: int, text: str, cached: int) -> dict:
    ttft = stamps[0] - start if stamps else float("nan")
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else float("nan")
    return {"ttft_ms": ttft * 1000, "decode_tps": decode, "tokens": tokens, "text": text,
            "cached": cached}


def paired_medians(server, local, content: str) -> tuple[dict, dict]:
    """Alternate server and in-process trials, so drift on a busy laptop hits both alike."""
    runs: dict = {"server": [], "local": []}
    for _ in range(REPEATS):
        for name, side in (("server", server), ("local", local)):
            time.sleep(SETTLE)
            runs[name].append(side.stream(messages(content)))

    def summary(rs):
        return {"ttft_ms": statistics.median(r["ttft_ms"] for r in rs),
                "decode_tps": statistics.median(r["decode_tps"] for r in rs),
                "tokens": rs[0]["tokens"]}
    return summary(runs["server"]), summary(runs["local"])


def conversation(side) -> list[float]:
    msgs = [{"role": "system", "content": long_prompt()}]
    out = []
    for turn in range(6):
        msgs.append({"role": "user", "content": f"Question {turn}: summarise note {turn}."})
        r = side.stream(msgs, max_tokens=24)
        msgs.append({"role": "assistant", "content": r["text"]})
        out.append(r["ttft_ms"])
    return out


def concurrent_clients(server: ServerSide, n: int = 4) -> dict:
    def one(i):
        start = time.perf_counter()
        r = ServerSide(server.url, server.model).stream(messages(f"Tell story number {i}."), 64)
        return r["tokens"], time.perf_counter() - start

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    return {"clients": n, "aggregate_tps": sum(t for t, _ in results) / wall,
            "slowest_s": max(s for _, s in results)}


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


def start_server(gguf: str | None, threads: int, extra: tuple[str, ...] = (),
                 env: dict | None = None) -> tuple[subprocess.Popen, str]:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = ["--model", gguf] if gguf else []
    proc = subprocess.Popen([sys.executable, "-m", "localgw", "serve", *model, "--port",
                             str(port), "--threads", str(threads), *extra], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True,
                            env=None if env is None else dict(os.environ, **env))
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


UPSTREAM_TTFT_PAIRS = 20


def upstream_overhead(gguf: str, threads: int) -> dict:
    """TTFT and decode tok/s through a gateway (`serve --upstream`) vs straight to its upstream.

    Two localgw servers: the upstream decodes the model; the gateway (its own empty home, so it
    holds only the idle embedded default) forwards to it. Direct and gateway trials alternate
    and never overlap; TTFT pairs use a 4-token answer, decode pairs DECODE_TOKENS.
    """
    import tempfile

    up_proc, up_url = start_server(gguf, threads)
    home = tempfile.mkdtemp(prefix="localgw-bench-gateway-")
    gw_proc = None
    try:
        gw_proc, gw_url = start_server(None, threads, ("--upstream", f"up={up_url}"),
                                       env={"LOCALGW_HOME": home})
        model = Path(gguf).stem
        sides = {"direct": ServerSide(up_url, model), "gateway": ServerSide(gw_url, model)}
        for side in sides.values():
            side.stream(messages("warm up"), 8)
        ttft: dict = {"direct": [], "gateway": []}
        for _ in range(UPSTREAM_TTFT_PAIRS):
            for name, side in sides.items():
                time.sleep(SETTLE / 5)
                ttft[name].append(side.stream(messages("Say hello."), 4)["ttft_ms"])
        decode: dict = {"direct": [], "gateway": []}
        for _ in range(REPEATS):
            for name, side in sides.items():
                time.sleep(SETTLE)
                decode[name].append(side.stream(messages("Write a long story about a dragon."))["decode_tps"])
    finally:
        for proc in (gw_proc, up_proc):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    out = {name: {"ttft_ms": statistics.median(ttft[name]),
                  "decode_tps": statistics.median(decode[name])} for name in ttft}
    out["ttft_overhead_ms"] = statistics.median(g - d for g, d in zip(ttft["gateway"], ttft["direct"]))
    out["decode_ratio"] = out["gateway"]["decode_tps"] / out["direct"]["decode_tps"]
    out["pairs"] = {"ttft": UPSTREAM_TTFT_PAIRS, "decode": REPEATS, "decode_tokens": DECODE_TOKENS}
    return out


def report_upstream(model: str, r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"localgw bench: through a gateway vs direct to the upstream ({model})")
    for col in ("measure", "direct", "through the gateway", "overhead / ratio"):
        t.add_column(col)
    t.add_row("TTFT ms (median)", f"{r['direct']['ttft_ms']:.1f}", f"{r['gateway']['ttft_ms']:.1f}",
              f"{r['ttft_overhead_ms']:+.2f} ms (median of paired differences)")
    t.add_row("decode tok/s (median)", f"{r['direct']['decode_tps']:.1f}",
              f"{r['gateway']['decode_tps']:.1f}", f"{r['decode_ratio']:.3f}×")
    Console().print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running server (default: start one)")
    ap.add_argument("--model", help="model id on that server (default: the file's stem)")
    ap.add_argument("--gguf", help="GGUF file for the in-process reference (default: SmolLM2)")
    ap.add_argument("--threads", type=int, default=default_threads()[0])
    ap.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    ap.add_argument("--upstream", action="store_true",
                    help="only the upstream case: a gateway forwarding to a second server vs direct")
    ap.add_argument("--chat-app", action="store_true",
                    help="only: decode tok/s of a long answer with the chat app attached vs. without")
    args = ap.parse_args()
    gguf = args.gguf or str(embedded_model_path())
    model = args.model or Path(gguf).stem
    if args.upstream:
        results = {"model": model, "threads": args.threads, "cpus": os.cpu_count(),
                   "upstream": upstream_overhead(gguf, args.threads)}
        report_upstream(model, results["upstream"])
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return
    proc = None
    if not args.url:
        proc, args.url = start_server(gguf, args.threads)
    results: dict = {"model": model, "threads": args.threads, "cpus": os.cpu_count(),
                     "repeats": REPEATS, "decode_tokens": DECODE_TOKENS}
    try:
        server = ServerSide(args.url, model)
        server.stream(messages("warm up"), 8)
        if args.chat_app:
            results["chat_app"] = chat_app_case(server)
        else:
            main_cases(server, gguf, args.threads, results)
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
    if args.chat_app:
        report_chat_app(results)
    else:
        report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def main_cases(server: ServerSide, gguf: str, threads: int, results: dict) -> None:
    local = InProcess(gguf, threads)  # loaded beside the server; never decoding with it
    local.stream(messages("warm up"), 8)
    results["server"], results["in_process"] = {}, {}
    for kind, content in (("short", "Write a long story about a dragon."), ("long", long_prompt())):
        results["server"][kind], results["in_process"][kind] = paired_medians(server, local, content)
    time.sleep(SETTLE)
    results["server"]["conversation_ttft_ms"] = conversation(server)
    time.sleep(SETTLE)
    results["in_process"]["conversation_ttft_ms"] = conversation(local)
    time.sleep(SETTLE)
    results["concurrent"] = concurrent_clients(server)


def report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"localgw bench: {r['model']}, {r['threads']} threads")
    for col in ("measure", "localgw server", "in-process llama-cpp-python", "ratio / delta"):
        t.add_column(col)
    s, p = r["server"], r["in_process"]
    for kind in ("short", "long"):
        t.add_row(f"{kind} prompt: TTFT ms", f"{s[kind]['ttft_ms']:.1f}", f"{p[kind]['ttft_ms']:.1f}",
                  f"{s[kind]['ttft_ms'] - p[kind]['ttft_ms']:+.1f} ms")
        t.add_row(f"{kind} prompt: decode tok/s", f"{s[kind]['decode_tps']:.1f}",
                  f"{p[kind]['decode_tps']:.1f}", f"{100 * s[kind]['decode_tps'] / p[kind]['decode_tps']:.1f}%")
    for i, (a, b) in enumerate(zip(s["conversation_ttft_ms"], p["conversation_ttft_ms"])):
        t.add_row(f"6-turn chat, turn {i + 1}: TTFT ms", f"{a:.1f}", f"{b:.1f}", f"{a - b:+.1f} ms")
    c = r["concurrent"]
    t.add_row(f"{c['clients']} concurrent clients: aggregate tok/s", f"{c['aggregate_tps']:.1f}", "-", "")
    t.add_row(f"{c['clients']} concurrent clients: slowest s", f"{c['slowest_s']:.2f}", "-", "")
    Console().print(t)


if __name__ == "__main__":
    main()
