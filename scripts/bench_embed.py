"""Embeddings throughput: 1,000 short texts through /v1/embeddings, requests/s and texts/s.

    .venv/bin/python scripts/bench_embed.py --model PATH.gguf          # starts localgw on PATH
    .venv/bin/python scripts/bench_embed.py --url http://127.0.0.1:8000 --model-id ID
    ... --compare-url http://127.0.0.1:8080   # the same texts against llama.cpp's llama-server
                                              # (`llama-server -m PATH --embeddings`), same run
    ... --llama-server BIN --threads 2        # starts `BIN -m PATH --embeddings --pooling mean
                                              # -t 2 -tb 2` itself (and localgw with --threads 2)

Texts go `--batch` to a request, `--concurrency` requests at a time; each side is warmed up with
one request first. Both servers get the same texts and the same request shape; with two sides,
trials alternate (the first side turns with each trial, never both at once) and the medians are
compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the a cat dog sat on mat red blue green quick brown fox jumps over lazy river city "
         "capital france paris model server token vector search index query document").split()


def texts(n: int) -> list[str]:
    """n short, distinct sentences (8-16 words), the same every run."""
    out = []
    for i in range(n):
        k = 8 + i % 9
        out.append(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(k)) + f" {i}.")
    return out


def run(url: str, model: str, items: list[str], batch: int, concurrency: int) -> dict:
    chunks = [items[i:i + batch] for i in range(0, len(items), batch)]
    with httpx.Client(base_url=url.rstrip("/"), timeout=600) as client:
        def post(chunk):
            resp = client.post("/v1/embeddings", json={"model": model, "input": chunk})
            resp.raise_for_status()
            assert len(resp.json()["data"]) == len(chunk)

        post(items[:batch])  # warm-up: loads the model, makes the embedding context
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, chunks))
        took = time.perf_counter() - start
    return {"url": url, "requests": len(chunks), "texts": len(items), "seconds": round(took, 3),
            "requests_per_s": round(len(chunks) / took, 2), "texts_per_s": round(len(items) / took, 1)}


def start_localgw(path: str, port: int, extra: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "localgw", "serve", "--port", str(port),
                             "--model", path, *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    for line in proc.stdout:
        if "localgw listening on" in line:  # then its log is drained, so it never blocks on it
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc
    raise SystemExit("localgw did not start")


def start_llama_server(binary: str, path: str, port: int, threads: int | None) -> subprocess.Popen:
    """llama.cpp's server with embeddings on, mean pooling (as localgw pools a chat model)."""
    cmd = [binary, "-m", path, "--embeddings", "--pooling", "mean", "--port", str(port),
           "--log-disable"]
    if threads:
        cmd += ["-t", str(threads), "-tb", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("llama-server did not start")


def trials(sides: dict[str, str], model_id: str, items: list[str], args) -> dict:
    """`args.repeats` trials a side, alternating; medians, every trial, and the ratio."""
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    names = list(sides)
    for trial in range(args.repeats):
        order = names if trial % 2 == 0 else names[::-1]
        for name in order:
            runs[name].append(run(sides[name], model_id, items, args.batch, args.concurrency))
            time.sleep(0.5)  # llama.cpp's threads spin a while after work
    out = {}
    for name, rs in runs.items():
        out[name] = {"url": sides[name], "requests": rs[0]["requests"], "texts": len(items),
                     "requests_per_s": round(statistics.median(r["requests_per_s"] for r in rs), 3),
                     "texts_per_s": round(statistics.median(r["texts_per_s"] for r in rs), 2),
                     "trials_texts_per_s": [r["texts_per_s"] for r in rs]}
    if len(names) == 2:
        out["ratio"] = round(out[names[0]]["texts_per_s"] / out[names[1]]["texts_per_s"], 3)
        out["requests_ratio"] = round(out[names[0]]["requests_per_s"]
                                      / out[names[1]]["requests_per_s"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="a running localgw (default: start one on --model)")
    ap.add_argument("--model", help="GGUF path to serve (and the model id, its stem)")
    ap.add_argument("--model-id", help="model id to ask for (default: --model's stem)")
    ap.add_argument("--compare-url", help="llama.cpp's llama-server --embeddings, same file")
    ap.add_argument("--llama-server", help="start this llama-server binary on --model to compare")
    ap.add_argument("--threads", type=int, help="threads of both servers this script starts")
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32, help="texts per request")
    ap.add_argument("--concurrency", type=int, default=4, help="requests at a time")
    ap.add_argument("--repeats", type=int, default=1, help="trials a side (alternating)")
    ap.add_argument("--port", type=int, default=8291)
    ap.add_argument("serve_args", nargs="*", help="after --: more `localgw serve` flags")
    args = ap.parse_args()
    model_id = args.model_id or (Path(args.model).stem if args.model else None)
    if not model_id:
        ap.error("give --model or --model-id")
    if (args.url is None or args.llama_server) and not args.model:
        ap.error("--model PATH is needed to start a server")
    procs = []
    try:
        sides = {"localgw": args.url}
        if args.url is None:
            extra = ["--threads", str(args.threads)] if args.threads else []
            procs.append(start_localgw(args.model, args.port, extra + args.serve_args))
            sides["localgw"] = f"http://127.0.0.1:{args.port}"
        if args.llama_server:
            procs.append(start_llama_server(args.llama_server, args.model, args.port + 1,
                                            args.threads))
            sides["llama-server"] = f"http://127.0.0.1:{args.port + 1}"
        elif args.compare_url:
            sides["llama-server"] = args.compare_url
        results = trials(sides, model_id, texts(args.texts), args)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
