"""Embeddings throughput: 1,000 short texts through /v1/embeddings, requests/s and texts/s.

    .venv/bin/python scripts/bench_embed.py --model PATH.gguf          # starts localgw on PATH
    .venv/bin/python scripts/bench_embed.py --url http://127.0.0.1:8000 --model-id ID
    ... --compare-url http://127.0.0.1:8080   # the same texts against llama.cpp's llama-server
                                              # (`llama-server -m PATH --embeddings`), same run

Texts go `--batch` to a request, `--concurrency` requests at a time; every run is warmed up with
one request first. Both servers get the same texts and the same request shape.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="a running localgw (default: start one on --model)")
    ap.add_argument("--model", help="GGUF path to serve (and the model id, its stem)")
    ap.add_argument("--model-id", help="model id to ask for (default: --model's stem)")
    ap.add_argument("--compare-url", help="llama.cpp's llama-server --embeddings, same file")
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32, help="texts per request")
    ap.add_argument("--concurrency", type=int, default=4, help="requests at a time")
    ap.add_argument("--port", type=int, default=8291)
    ap.add_argument("serve_args", nargs="*", help="after --: more `localgw serve` flags")
    args = ap.parse_args()
    model_id = args.model_id or (Path(args.model).stem if args.model else None)
    if not model_id:
        ap.error("give --model or --model-id")
    items = texts(args.texts)
    proc = None
    url = args.url
    if url is None:
        if not args.model:
            ap.error("--model PATH is needed to start localgw")
        proc = start_localgw(args.model, args.port, args.serve_args)
        url = f"http://127.0.0.1:{args.port}"
    try:
        results = {"localgw": run(url, model_id, items, args.batch, args.concurrency)}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    if args.compare_url:
        results["llama-server"] = run(args.compare_url, model_id, items, args.batch,
                                      args.concurrency)
        results["ratio"] = round(results["localgw"]["texts_per_s"]
                                 / results["llama-server"]["texts_per_s"], 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
