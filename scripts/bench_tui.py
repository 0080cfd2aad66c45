#!/usr/bin/env python3
"""Decode speed of one long reply with the chat app attached, against a plain streaming client.

    .venv/bin/python scripts/bench_tui.py                 # the app in tmux, 4,096-token reply
    .venv/bin/python scripts/bench_tui.py --headless      # the app without a terminal
    .venv/bin/python scripts/bench_tui.py --url http://127.0.0.1:8000 --model ID   # a running server

Starts `localgw serve` on the embedded model (unless --url), then asks for the same reply twice,
one after the other, never both at once: once from the chat app (its own code path, HttpChatClient,
painting as it does for a user), once from a plain httpx streaming client. The reply runs to --tokens
(temperature 0, the end-of-turn token banned by logit_bias). The app runs in a child process, in a
tmux window of --size (a real terminal: the app writes escape codes and tmux parses them, as for a
user), or with --headless as a Textual app without a terminal (layout and paint, no output).

Decode tok/s on both sides is (tokens - 1) / (last content delta - first content delta), the
figure the app shows in its status line; "last 1/8" is the same over the last eighth of the
deltas, where a cost that grows with the reply's length shows most. "paint lag" is how long after
the last delta the app had painted it; "app CPU" is the app process's CPU time per token over the
first and the last eighth of the deltas, and per paint while streaming; "tmux CPU" is the tmux
server's, per token over the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "Write a very long story about a dragon and a knight, with many chapters."
EOS_BAN = {"2": -100}  # SmolLM2's <|im_end|>: the reply runs to max_tokens


def body(model: str, tokens: int) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0,
            "max_tokens": tokens, "logit_bias": EOS_BAN, "stream": True,
            "stream_options": {"include_usage": True}}


def speeds(stamps: list[float], tokens: int) -> dict:
    """Decode tok/s over all content deltas and over their last eighth (tokens per delta kept)."""
    if len(stamps) < 16 or tokens < 2:
        return {"tokens": tokens, "deltas": len(stamps), "tps": float("nan"), "tail_tps": float("nan")}
    per_delta = tokens / len(stamps)
    tail = stamps[-len(stamps) // 8:]
    return {"tokens": tokens, "deltas": len(stamps),
            "tps": (tokens - 1) / (stamps[-1] - stamps[0]),
            "tail_tps": (len(tail) - 1) * per_delta / (tail[-1] - tail[0])}


# ---- the plain client -----------------------------------------------------------------------
def plain_client(url: str, model: str, tokens: int) -> dict:
    stamps, usage, text = [], {}, []
    with httpx.Client(base_url=url, timeout=900) as http:
        with http.stream("POST", "/v1/chat/completions", json=body(model, tokens)) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        stamps.append(time.perf_counter())
                        text.append(choice["delta"]["content"])
    return speeds(stamps, usage.get("completion_tokens", len(stamps))) | {"text": "".join(text)}


# ---- the chat app (child process) -----------------------------------------------------------
def run_app(url: str, model: str, tokens: int, out: Path, headless: bool) -> None:
    """The app with one conversation: sends PROMPT at start, writes its timings to `out`, quits."""
    from localgw.tui import app as chat_app
    from localgw.tui.app import ChatApp
    from localgw.tui.client import Delta, Finished, HttpChatClient
    from localgw.tui.history import ChatHistory
    from localgw.tui.widgets import AssistantMessage

    stamps: list[float] = []
    cpu: list[float] = []  # this process's CPU seconds at each stamp
    result: dict = {}
    paints: list[float] = []
    paint = AssistantMessage._paint

    async def timed_paint(self) -> None:
        await paint(self)
        paints.append(time.perf_counter())

    AssistantMessage._paint = timed_paint

    class TimedClient(HttpChatClient):
        async def stream_chat(self, *args, **kwargs):
            async for event in super().stream_chat(*args, **kwargs):
                if isinstance(event, Delta) and event.content:
                    stamps.append(time.perf_counter())
                    cpu.append(time.process_time())
                elif isinstance(event, Finished):
                    result["usage"] = event.usage
                yield event

    class BenchApp(ChatApp):
        CSS_PATH = str(Path(chat_app.__file__).with_name(ChatApp.CSS_PATH))

        async def on_ready(self) -> None:
            # the settings a user would set: greedy, and the reply cap
            self.conv.temperature, self.conv.max_tokens = 0.0, tokens
            prompt = self.query_one("#prompt")
            prompt.value = PROMPT
            await prompt.action_submit()
            self.set_interval(0.2, self._done)

        async def _done(self) -> None:
            if self.generating or not self.last_stats or "status" in result:
                return
            result["status"] = self.last_stats
            await self.client.aclose()  # on the app's event loop, which ends with it
            self.exit()

    with tempfile.TemporaryDirectory() as tmp:
        history = ChatHistory(Path(tmp) / "chat.sqlite")
        client = TimedClient(url, extra_body={"logit_bias": EOS_BAN})
        try:
            BenchApp(client, history, model=model).run(headless=headless)
        finally:
            history.close()
    done = (result.get("usage") or {}).get("completion_tokens", len(stamps))
    eighth = len(cpu) // 8
    per_delta = done / max(len(cpu), 1)
    cpu_ms = [1000 * (c[-1] - c[0]) / ((len(c) - 1) * per_delta) if len(c) > 1 else None
              for c in (cpu[:eighth], cpu[-eighth:])]
    streaming = [t for t in paints if stamps and stamps[0] <= t <= stamps[-1]]
    out.write_text(json.dumps(speeds(stamps, done) | {
        "status": result.get("status", ""), "cpu_ms_per_token": cpu_ms,
        "paints_per_s": len(streaming) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None,
        "cpu_ms_per_paint": 1000 * (cpu[-1] - cpu[0]) / len(streaming) if streaming else None,
        "paint_lag_s": (paints[-1] - stamps[-1]) if paints and stamps else None}))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0 where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def app_side(url: str, model: str, tokens: int, headless: bool, size: tuple[int, int]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "app.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out), "--url", url,
               "--model", model, "--tokens", str(tokens)]
        if headless:
            subprocess.run(cmd + ["--headless"], check=True, cwd=ROOT)
        else:
            if not shutil.which("tmux"):
                sys.exit("bench_tui: no tmux (use --headless)")
            sock = str(Path(tmp) / "tmux")  # a tmux server of our own, ended below
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items()
                           if k in ("PYTHONPATH", "PATH", "HOME", "LOCALGW_HOME"))
            # Textual draws on stderr: it must stay the pane's terminal (errors go to OUT.err)
            line = f"env {env} TERM=xterm-256color {shlex.join(cmd)}"
            subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", "new-session", "-d",
                            "-x", str(size[0]), "-y", str(size[1]), line], check=True, cwd=ROOT)
            tmux_pid = int(subprocess.run(["tmux", "-S", sock, "display", "-p", "#{pid}"],
                                          capture_output=True, text=True).stdout.strip() or 0)
            tmux_cpu, tmux_used = cpu_seconds(tmux_pid), 0.0
            try:
                while not out.exists():
                    tmux_used = cpu_seconds(tmux_pid) - tmux_cpu
                    alive = subprocess.run(["tmux", "-S", sock, "has-session"],
                                           capture_output=True).returncode == 0
                    if not alive and not out.exists():
                        err = out.with_suffix(".err")
                        sys.exit("bench_tui: the app ended without a result\n"
                                 + (err.read_text()[-3000:] if err.exists() else ""))
                    time.sleep(0.5)
                time.sleep(0.5)  # the app writes its result as it quits
            finally:
                subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
        result = json.loads(out.read_text())
        if not headless:
            result["tmux_cpu_ms_per_token"] = 1000 * tmux_used / max(result["tokens"], 1)
    if not result["deltas"]:
        sys.exit(f"bench_tui: the app got no reply (status line: {result['status']!r})")
    return result


# ---- the server -----------------------------------------------------------------------------
def start_server(threads: int | None) -> tuple[subprocess.Popen, str]:
    from localgw.defaults import embedded_model_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "localgw", "serve", "--model", str(embedded_model_path()),
           "--port", str(port)] + (["--threads", str(threads)] if threads else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    ready = threading.Event()

    def pump():
        for line in proc.stderr:
            if "localgw listening on" in line:
                ready.set()
    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120):
        proc.kill()
        sys.exit("bench_tui: the server did not start")
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running server (default: start one on the embedded model)")
    ap.add_argument("--model", help="model id there (default: its first)")
    ap.add_argument("--tokens", type=int, default=4096, help="reply length (default 4096)")
    ap.add_argument("--headless", action="store_true", help="the app without a terminal, not in tmux")
    ap.add_argument("--size", default="100x40", help="the app's terminal, WxH (default 100x40)")
    ap.add_argument("--threads", type=int, help="the started server's decode threads")
    ap.add_argument("--repeats", type=int, default=1, help="pairs of runs (default 1)")
    ap.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    ap.add_argument("--child", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        try:
            run_app(args.url, args.model, args.tokens, Path(args.child), args.headless)
        except BaseException:
            Path(args.child).with_suffix(".err").write_text(traceback.format_exc())
            raise
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench_tui: terminated"))  # cleanups run
    size = tuple(int(n) for n in args.size.lower().split("x"))
    proc, url = (None, args.url.rstrip("/")) if args.url else start_server(args.threads)
    try:
        model = args.model or httpx.get(f"{url}/v1/models").raise_for_status().json()["data"][0]["id"]
        plain_client(url, model, 8)  # warm up
        runs = []
        for _ in range(args.repeats):
            app = app_side(url, model, args.tokens, args.headless, size)
            time.sleep(1)
            plain = plain_client(url, model, args.tokens)
            runs.append({"app": app, "plain": plain, "ratio": app["tps"] / plain["tps"]})
            time.sleep(1)
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
    where = "headless" if args.headless else f"tmux {size[0]}x{size[1]}"
    print(f"bench_tui: {model}, {args.tokens}-token reply, temperature 0, app {where}")
    for r in runs:
        a, p = r["app"], r["plain"]
        print(f"  plain client: {p['tps']:6.1f} tok/s (last 1/8: {p['tail_tps']:5.1f}), "
              f"{p['tokens']} tokens")
        lag = f", paint lag {a['paint_lag_s'] * 1000:.0f} ms" if a.get("paint_lag_s") is not None else ""
        print(f"  chat app:     {a['tps']:6.1f} tok/s (last 1/8: {a['tail_tps']:5.1f}), "
              f"{a['tokens']} tokens{lag}; status line: {a['status']}")
        first, last = a["cpu_ms_per_token"]
        if first is not None and last is not None:
            print(f"  app CPU:      {first:.2f} ms/token over the first 1/8, {last:.2f} over the last; "
                  f"{a['paints_per_s']:.1f} paints/s, {a['cpu_ms_per_paint']:.1f} ms a paint")
        if a.get("tmux_cpu_ms_per_token") is not None:
            print(f"  tmux CPU:     {a['tmux_cpu_ms_per_token']:.2f} ms/token")
        print(f"  ratio app/plain: {r['ratio']:.2f}x (last 1/8: {a['tail_tps'] / p['tail_tps']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model, "tokens": args.tokens,
                                               "where": where, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
