#!/usr/bin/env python3
"""Claude Code and Codex, run for real against localgw. A check to run by hand, not a test.

    .venv/bin/python scripts/agents.py                  # install the clients, start a server, run
    .venv/bin/python scripts/agents.py --url http://127.0.0.1:8000 --model ID
    .venv/bin/python scripts/agents.py --capture tests/data/agents   # also save request fixtures

It installs the two clients from npm (pinned versions) into a cache folder, starts
`localgw serve --ctx 32768` on the embedded model unless `--url` is given, and puts a recording
proxy between the clients and the server. Each client runs headless twice with a short prompt
(the second call shows how much of the first one's prompt the cache gives back) and once with a
small file-editing task in a scratch folder. At the end: every request the proxy saw (client,
route, status, prompt and cached tokens, output tokens, seconds), and each run's exit status and
answer. Exits 1 if a request got a 4xx/5xx or a client failed.

The clients are kept local: `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` and a scratch HOME for
Claude Code, a scratch `CODEX_HOME` whose config.toml names this server for Codex.
`--capture DIR` writes each distinct request body the clients sent, its text replaced and its ids
scrubbed, as the fixtures tests/integration/test_agent_replay.py replays.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localgw.defaults import DEFAULT_MODEL_ID  # noqa: E402

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.332"
CODEX = "@openai/codex@0.171.0"
PROMPT = "Say hello in one short sentence."
EDIT_TASK = "In hello.py the parameter name is misspelled. Fix it, then say what you changed."
HELLO_PY = 'def greet(nmae):\n    return "Hello, " + nmae\n'
RUN_SECONDS = 600
FORWARDED = ("content-type", "authorization", "x-api-key", "anthropic-version", "anthropic-beta",
             "accept", "openai-beta", "x-request-id")


# ---- the clients ---------------------------------------------------------------------------------
def install(cache: Path) -> dict[str, Path]:
    """npm-install both clients into `cache` (once); their executables."""
    bins = {"claude": cache / "node_modules/.bin/claude", "codex": cache / "node_modules/.bin/codex"}
    if not all(b.exists() for b in bins.values()):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache),
                        CLAUDE_CODE, CODEX], check=True)
    native = cache / "node_modules/@anthropic-ai/claude-code"
    if b"#!/usr/bin/env node" in (native / "bin/claude.exe").read_bytes()[:64]:
        subprocess.run(["node", "install.cjs"], cwd=native, check=True)  # npm skipped it
    return bins


def claude_run(binary: Path, base_url: str, model: str, workdir: Path, home: Path,
               prompt: str, edit: bool, max_output: int) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": base_url,
           "ANTHROPIC_AUTH_TOKEN": "local", "ANTHROPIC_MODEL": model,
           "ANTHROPIC_SMALL_FAST_MODEL": model, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(max_output)}
    args = [str(binary), "-p", prompt, "--output-format", "text"]
    if edit:
        args += ["--permission-mode", "acceptEdits", "--allowedTools", "Read,Edit"]
    return _run(args, env, workdir)


def codex_run(binary: Path, base_url: str, model: str, workdir: Path, home: Path,
              prompt: str, edit: bool, max_output: int) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "localgw"\n'
        f'model_max_output_tokens = {max_output}\n\n'
        f'[model_providers.localgw]\nname = "localgw"\nbase_url = "{base_url}/v1"\n'
        f'wire_api = "responses"\n')
    env = {"PATH": os.environ["PATH"], "HOME": str(home.parent), "CODEX_HOME": str(home)}
    args = [str(binary), "exec", "--skip-git-repo-check", "-C", str(workdir)]
    if edit:
        args += ["--sandbox", "workspace-write"]  # it may write in the folder it runs in
    return _run(args + [prompt], env, workdir)


def _run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=RUN_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(args, -9, exc.stdout or "", f"timed out after "
                                                                        f"{RUN_SECONDS} s")


# ---- the recording proxy ---------------------------------------------------------------------------
class Recorder:
    """Forwards everything to the server and notes what passed: one row per request."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.rows: list[dict] = []
        self.bodies: list[tuple[str, str, dict]] = []  # (client, path, body)
        self.client = ""

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import StreamingResponse
        from starlette.routing import Route

        http = httpx.AsyncClient(timeout=httpx.Timeout(RUN_SECONDS, connect=10))

        async def forward(request):
            body = await request.body()
            path = request.url.path
            row = {"client": self.client, "method": request.method, "route": path}
            self.rows.append(row)
            if body and "json" in request.headers.get("content-type", ""):
                try:
                    self.bodies.append((self.client, path, json.loads(body)))
                except ValueError:
                    pass
            headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
            url = self.upstream + path + (f"?{request.url.query}" if request.url.query else "")
            started = time.perf_counter()
            upstream = await http.send(http.build_request(request.method, url, content=body,
                                                          headers=headers), stream=True)
            row["status"] = upstream.status_code

            async def relay():
                seen = bytearray()
                try:
                    async for chunk in upstream.aiter_raw():
                        seen += chunk
                        yield chunk
                finally:
                    await upstream.aclose()
                    row["seconds"] = time.perf_counter() - started
                    row.update(usage_of(bytes(seen)))
                    if upstream.status_code >= 400:
                        row["error"] = bytes(seen[:300]).decode("utf-8", "replace")
                    print(f"  {row['client']}: {path} {row['status']} prompt {row.get('prompt')} "
                          f"cached {row.get('cached')} output {row.get('output')} "
                          f"{row['seconds']:.1f}s", flush=True)

            return StreamingResponse(relay(), status_code=upstream.status_code,
                                     headers={k: v for k, v in upstream.headers.items()
                                              if k.lower() in ("content-type", "x-request-id")})

        return Starlette(routes=[Route("/{path:path}", forward,
                                       methods=["GET", "POST", "HEAD", "OPTIONS", "DELETE"])])


def usage_of(raw: bytes) -> dict:
    """Prompt, cached and output tokens from an answer: JSON, or the usage its SSE events carry."""
    found: dict = {}
    texts = [line[6:] for line in raw.decode("utf-8", "replace").splitlines()
             if line.startswith("data: {")] or [raw.decode("utf-8", "replace")]
    for text in texts:
        try:
            event = json.loads(text)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        holder = event.get("response") or event.get("message") or event
        usage = (holder.get("usage") if isinstance(holder, dict) else None) or event.get("usage")
        if not isinstance(usage, dict):
            continue
        if "cache_read_input_tokens" in usage:  # Anthropic: input_tokens are the uncached ones
            cached = usage.get("cache_read_input_tokens") or 0
            if usage.get("input_tokens") is not None:
                found["prompt"] = (usage.get("input_tokens") or 0) + cached
                found["cached"] = cached
        elif "input_tokens" in usage:  # Responses
            found["prompt"] = usage["input_tokens"]
            found["cached"] = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
        elif "prompt_tokens" in usage:  # chat completions
            found["prompt"] = usage["prompt_tokens"]
            found["cached"] = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        for key in ("output_tokens", "completion_tokens"):
            if usage.get(key) is not None:
                found["output"] = usage[key]
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_in_thread(app) -> tuple[str, object]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def start_localgw(ctx: int, max_output: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    home = tempfile.mkdtemp(prefix="localgw-agents-home-")
    proc = subprocess.Popen([sys.executable, "-m", "localgw", "serve", "--port", str(port),
                             "--ctx", str(ctx), "--max-output", str(max_output)],
                            env=dict(os.environ, LOCALGW_HOME=home), cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "localgw listening on" in line:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, f"http://127.0.0.1:{port}"
    raise SystemExit("localgw did not start")


# ---- fixtures: request shapes without their text ---------------------------------------------------
TEXT_KEYS = {"text", "content", "description", "instructions", "thinking", "output", "arguments",
             "signature", "data"}
ID_KEYS = {"id", "call_id", "tool_use_id", "prompt_cache_key", "user_id", "session_id",
           "previous_response_id"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
BILLING = re.compile(r"(cc_version=)[^;]*(;.*?cch=)[0-9a-f]+;")


def scrub(value, key: str = "", ids: dict | None = None):
    """Text replaced by its length, ids by stable placeholders (a reference keeps pointing at
    what it named), Claude Code's billing line kept in its shape."""
    ids = {} if ids is None else ids
    if isinstance(value, dict):
        return {k: scrub(v, k, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, key, ids) for v in value]
    if not isinstance(value, str):
        return value
    if value.startswith("x-anthropic-billing-header:"):
        return BILLING.sub(r"\g<1>0.0.0.000\g<2>00000;", value)
    if key == "arguments":  # a tool call's arguments stay JSON, with their text scrubbed
        try:
            return json.dumps(scrub(json.loads(value), "", ids))
        except ValueError:
            return "{}"
    value = UUID.sub(lambda m: ids.setdefault(m.group(0).lower(), f"uuid-{len(ids) + 1}"), value)
    if key in ID_KEYS or key == "metadata":
        return ids.setdefault(value, f"{key}-{len(ids) + 1}")
    if key in TEXT_KEYS and len(value) > 24:
        return f"[{len(value)} characters of {key}]"
    return value


def capture(bodies: list[tuple[str, str, dict]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written, seen = [], set()
    for client, path, body in bodies:
        shape = scrub(body)
        key = json.dumps(shape, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        name = f"{client.replace(' ', '-')}-{len(written) + 1:02d}{path.replace('/', '-')}.json"
        (folder / name).write_text(json.dumps({"client": client, "route": path, "body": shape},
                                              indent=1) + "\n")
        written.append(folder / name)
    return written


# ---- the report ------------------------------------------------------------------------------------
def report(rows: list[dict], runs: list[dict]) -> bool:
    print(f"\n{'client':<24}{'route':<28}{'status':>7}{'prompt':>8}{'cached':>8}{'cached %':>9}"
          f"{'output':>8}{'s':>8}")
    for r in rows:
        prompt, cached = r.get("prompt"), r.get("cached")
        share = f"{100 * cached / prompt:.0f}%" if prompt and cached is not None else ""
        print(f"{r['client']:<24}{r['method'] + ' ' + r['route']:<28}{r.get('status', '-'):>7}"
              f"{prompt if prompt is not None else '':>8}{cached if cached is not None else '':>8}"
              f"{share:>9}{r.get('output', ''):>8}{r.get('seconds', 0):>8.1f}")
        if r.get("error"):
            print(f"    {r['error'][:200]}")
    print(f"\n{'run':<24}{'exit':>5}  answer")
    for run in runs:
        answer = " ".join(run["stdout"].split())[:90] or f"(stderr) {' '.join(run['stderr'].split())[:80]}"
        print(f"{run['client']:<24}{run['exit']:>5}  {answer}")
    bad = [r for r in rows if r.get("status", 0) >= 400] + [r for r in runs if r["exit"] != 0]
    print("\nRESULT:", "ok" if not bad else f"{len(bad)} failed request(s) or run(s)")
    return not bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running localgw (default: start one on the embedded model)")
    ap.add_argument("--model", default=DEFAULT_MODEL_ID, help="the model the clients ask for")
    ap.add_argument("--ctx", type=int, default=32768, help="--ctx of the server it starts")
    ap.add_argument("--max-output", type=int, default=256,
                    help="output cap: CLAUDE_CODE_MAX_OUTPUT_TOKENS, Codex's "
                         "model_max_output_tokens, the started server's --max-output")
    ap.add_argument("--cache", type=Path, default=None,
                    help="where the clients are installed (default: the user cache folder)")
    ap.add_argument("--only", choices=["claude", "codex"], help="run one client")
    ap.add_argument("--capture", type=Path, metavar="DIR", help="write request fixtures here")
    args = ap.parse_args()
    import platformdirs

    cache = args.cache or Path(platformdirs.user_cache_dir("localgw")) / "agents"
    bins = install(cache)
    proc = None
    url = args.url
    if url is None:
        proc, url = start_localgw(args.ctx, args.max_output)
    recorder = Recorder(url)
    proxy_url, proxy = serve_in_thread(recorder.app())
    scratch = Path(tempfile.mkdtemp(prefix="localgw-agents-"))
    runs = []
    try:
        clients = [("claude", claude_run), ("codex", codex_run)]
        for name, run in clients:
            if args.only and name != args.only:
                continue
            home = scratch / f"{name}-home"
            home.mkdir()
            for label, prompt, edit in (("prompt 1", PROMPT, False), ("prompt 2", PROMPT, False),
                                        ("edit", EDIT_TASK, True)):
                # The two prompts run in one folder, as a user's two calls would: the folder
                # is part of both clients' system prompts.
                work = scratch / f"{name}-{'edit' if edit else 'prompt'}"
                work.mkdir(exist_ok=True)
                (work / "hello.py").write_text(HELLO_PY)
                recorder.client = f"{name} {label}"
                done = run(bins[name], proxy_url, args.model, work, home, prompt, edit,
                           args.max_output)
                runs.append({"client": recorder.client, "exit": done.returncode,
                             "stdout": done.stdout, "stderr": done.stderr,
                             "edited": (work / "hello.py").read_text() != HELLO_PY})
    finally:
        proxy.should_exit = True
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(scratch, ignore_errors=True)
    ok = report(recorder.rows, runs)
    if args.capture:
        for path in capture(recorder.bodies, args.capture):
            print(f"captured {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
