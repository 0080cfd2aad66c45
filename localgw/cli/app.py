"""Typer commands. Each is a few lines over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from localgw import defaults
from localgw.cli.output import human_count, human_size, print_json, stderr, table
from localgw.errors import StoreError
from localgw.store import ModelStore

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="localgw: a local OpenAI-compatible server for GGUF models on llama.cpp.")


@app.command("import")
def import_(path: Path = typer.Argument(..., help="a .gguf file (first shard of a split set)"),
            id: Optional[str] = typer.Option(None, "--id", help="model id (default: file stem)"),
            json_: bool = typer.Option(False, "--json")):
    """Register a local GGUF file without copying it."""
    manifest = ModelStore().import_file(path, id)
    if json_:
        print_json(manifest.model_dump())
    else:
        print(manifest.id)
        stderr.print(f"imported {manifest.id}: {manifest.architecture}, "
                     f"{human_count(manifest.parameters)} parameters, {manifest.quantization}, "
                     f"{human_size(manifest.size)}")


@app.command("list")
def list_(json_: bool = typer.Option(False, "--json")):
    """The registered models."""
    manifests = ModelStore().list()
    if json_:
        print_json([m.model_dump() for m in manifests])
        return
    if not manifests:
        stderr.print("no models yet: `localgw pull REF` or `localgw import FILE.gguf`")
        return
    table(["ID", "REPO", "FILE", "QUANT", "SIZE", "ADDED"],
          [[m.id, m.repo or "-", Path(m.path).name + (f" (+{len(m.files) - 1})" if len(m.files) > 1 else ""),
            m.quantization or "-", human_size(m.size), m.created_at[:16].replace("T", " ")]
           for m in manifests], keep=0, whole=(1, 2))


@app.command("show")
def show(model_id: str = typer.Argument(..., metavar="ID"),
         estimate: bool = typer.Option(False, "--estimate",
                                       help="memory needed, and the context and GPU layers that fit"),
         ctx: Optional[int] = typer.Option(None, "--ctx", min=16, help="with --estimate: this context"),
         gpu_layers: Optional[int] = typer.Option(None, "--gpu-layers", help="with --estimate"),
         json_: bool = typer.Option(False, "--json")):
    """One model: GGUF metadata, template family, tool/reasoning support, paths."""
    from localgw.gguf import read_gguf

    manifest = _find_model(model_id)
    info = read_gguf(manifest.path)
    if estimate:
        return _show_estimate(manifest, info, ctx, gpu_layers, json_)
    from localgw.chat.defaults import defaults_for_manifest

    sampling = defaults_for_manifest(manifest)
    from localgw.protocols.embeddings import model_does

    does = model_does(manifest.path)
    data = manifest.model_dump() | {"gguf": info.summary(), "default_sampling": sampling.values,
                                    "default_sampling_sources": sampling.sources, "does": does}
    if json_:
        print_json(data)
        return
    rows = [("id", manifest.id), ("architecture", info.architecture),
            ("parameters", human_count(info.n_params)), ("context length", str(info.context_length)),
            ("quantization", str(info.quantization)), ("licence", str(info.license or "-")),
            ("template", manifest.template_family), ("tools", "yes" if manifest.supports_tools else "no"),
            ("reasoning", "yes" if manifest.supports_reasoning else "no"),
            ("does", ", ".join(does)), ("size", human_size(manifest.size))]
    rows += [("repo", f"{manifest.repo}@{manifest.commit}")] if manifest.repo else []
    rows += [("sampling defaults", ", ".join(f"{k} {v:g} ({sampling.sources[k]})"
                                             for k, v in sampling.values.items()))]
    rows += [("file" if len(manifest.files) == 1 else f"file {i + 1}", f.path)
             for i, f in enumerate(manifest.files)]
    table(["", ""], [list(r) for r in rows])


def _find_model(model_id: str):
    """A registered model, or the embedded default that `serve` serves when the store is empty."""
    from localgw.defaults import DEFAULT_MODEL_ID, embedded_model_path
    from localgw.gguf import read_gguf
    from localgw.store import ModelFile, manifest_from_gguf

    store = ModelStore()
    path = embedded_model_path() if model_id == DEFAULT_MODEL_ID else None
    if store.get(model_id) is None and path is not None:
        return manifest_from_gguf(model_id, read_gguf(path),
                                  [ModelFile(path=str(path), size=path.stat().st_size)], source="path")
    return store.require(model_id)


def _show_estimate(manifest, info, ctx, gpu_layers, json_) -> None:
    from localgw.engine.devices import list_devices
    from localgw.engine.fit import ModelShape, plan
    from localgw.engine.runner import gpu_offload_supported

    devices = list_devices()
    est = plan(ModelShape.from_gguf(info), devices, n_ctx=ctx, n_gpu_layers=gpu_layers,
               offload_supported=gpu_offload_supported())
    if json_:
        print_json(est.to_dict() | {"id": manifest.id,
                                    "devices": [d.__dict__ for d in devices]})
        return
    mib = lambda n: f"{n / 2 ** 20:,.0f} MiB"  # noqa: E731
    table(["", ""], [["id", manifest.id], ["context", str(est.n_ctx)],
                     ["GPU layers", f"{est.n_gpu_layers} of {ModelShape.from_gguf(info).n_layers + 1}"],
                     ["weights", mib(est.weights)], ["KV cache", mib(est.kv)],
                     ["compute buffers", mib(est.compute)], ["total", mib(est.total)],
                     ["on the GPU", mib(est.gpu)], ["in RAM", mib(est.cpu)]]
          + [[f"{d.kind} {d.name}", f"{mib(d.free)} free of {mib(d.total)}"] for d in devices])


@app.command("rm")
def rm(model_id: str = typer.Argument(..., metavar="ID"),
       yes: bool = typer.Option(False, "--yes", "-y", help="do not ask")):
    """Unregister a model and delete the files it alone uses."""
    from localgw.hub.remove import remove_model

    store = ModelStore()
    manifest = store.require(model_id)
    if not yes:
        if not sys.stdin.isatty():
            raise StoreError(f"refusing to remove {model_id} without --yes (no terminal to ask)")
        typer.confirm(f"remove {model_id} ({human_size(manifest.size)})?", abort=True)
    freed = remove_model(store, model_id)
    stderr.print(f"removed {model_id}" + (f", freed {human_size(freed)}" if freed else ""))


@app.command("serve")
def serve(
    host: str = typer.Option(None, help=f"bind address (env LOCALGW_HOST; default {defaults.HOST})"),
    port: int = typer.Option(None, help=f"port (env LOCALGW_PORT; default {defaults.PORT})"),
    model: list[str] = typer.Option([], "--model", "-m", help="id or GGUF path to preload (repeatable)"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="LOCALGW_API_KEY",
                                          help="require this key (Bearer or x-api-key)"),
    ctx: Optional[int] = typer.Option(None, "--ctx", min=16, help="context size in tokens"),
    gpu_layers: Optional[int] = typer.Option(None, "--gpu-layers",
                                             help="layers on the GPU (-1 all; default all when built with GPU support)"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="decode threads"),
    max_loaded: int = typer.Option(defaults.MAX_LOADED, "--max-loaded", min=1, help="models loaded at once"),
    keep_alive: str = typer.Option(defaults.KEEP_ALIVE, "--keep-alive",
                                   help="how long an idle model stays loaded (30s, 5m, 1h; 0 unloads after each request; -1 never)"),
    max_queue: int = typer.Option(defaults.MAX_QUEUE, "--max-queue", min=1, help="queued requests per model before 429"),
    max_body: int = typer.Option(defaults.MAX_BODY_BYTES, "--max-body", min=1024, help="request body limit, bytes"),
    chat_template: Optional[Path] = typer.Option(None, "--chat-template",
                                                 help="Jinja file overriding the models' templates"),
    insecure: bool = typer.Option(False, "--insecure", help="allow a non-loopback bind without a key"),
    allowed_hosts: list[str] = typer.Option([], "--allowed-hosts", metavar="NAME,…",
                                            help="Host names to serve beyond this machine's own "
                                                 "(*.example.com wildcards; * for any; README: "
                                                 "Browsers)"),
    cors_origins: list[str] = typer.Option([], "--cors-origins", metavar="ORIGIN,…",
                                           help="web pages (https://app.example.com) that may call "
                                                "the API, beyond this machine's own; * for any"),
    reasoning_field: str = typer.Option(defaults.REASONING_FIELD, "--reasoning-field",
                                        help="where thinking goes: reasoning_content, reasoning or both"),
    limit: list[str] = typer.Option([], "--limit", metavar="NAME=N",
                                    help="raise a per-request limit, e.g. max_messages=10000 "
                                         "(repeatable; see README: Limits)"),
    max_output: int = typer.Option(defaults.MAX_OUTPUT_TOKENS, "--max-output", min=1,
                                   help="tokens a reply may have when the request sets no max_tokens"),
    parallel: Optional[int] = typer.Option(None, "--parallel", min=1, max=64,
                                           help="slots per model: requests decoded together (default by memory, at least 2)"),
    cache_ram: Optional[str] = typer.Option(None, "--cache-ram",
                                            help="host-RAM prompt cache, e.g. 2GiB or 512MiB; 0 turns it off (default min(2 GiB, 10% of RAM))"),
    flash_attn: str = typer.Option("auto", "--flash-attn", metavar="auto|on|off",
                                   help="llama.cpp's flash attention: auto lets it choose per device "
                                        "(README: Threads, on the trade on CPUs)"),
    kv_unified: bool = typer.Option(False, "--kv-unified",
                                    help="the slots' KV cells in one shared pool: faster for several "
                                         "streams on a GPU, but a stream's last bits then depend on "
                                         "its neighbours (README: What you can rely on)"),
    spec: str = typer.Option(defaults.SPEC, "--spec", metavar="auto|off|ngram|draft",
                             help="speculative decoding: auto where it pays, look-ups (ngram), "
                                  "the draft model (draft), or off (README: Speculative decoding)"),
    spec_max: int = typer.Option(defaults.SPEC_MAX, "--spec-max", min=0, max=62,
                                 help="most tokens a request drafts in one step"),
    draft_model: Optional[str] = typer.Option(None, "--draft-model", metavar="ID_OR_PATH",
                                              help="a small model with the same vocabulary, "
                                                   "drafting for --spec draft (and auto)"),
    upstream: list[str] = typer.Option([], "--upstream", metavar="[NAME=]URL",
                                       help="serve an OpenAI-compatible engine's models too (repeatable; "
                                            "more in $LOCALGW_HOME/upstreams.toml)"),
):
    """Run the OpenAI-compatible API server."""
    options = dict(locals())  # every option by its parameter name, as serve_settings takes them
    from localgw.cli.serve import run_server
    from localgw.cli.serve_options import serve_settings

    run_server(serve_settings(**options))


@app.command("ps")
def ps(url: str = typer.Option(defaults.SERVER_URL, "--url"),
       api_key: Optional[str] = typer.Option(None, "--api-key", envvar="LOCALGW_API_KEY"),
       json_: bool = typer.Option(False, "--json")):
    """Models loaded in a running server: memory, context, offload, when each unloads."""
    from localgw.cli.client import get_json
    from localgw.durations import describe

    health = get_json(url, "/health", api_key)
    models = health.get("models", [])
    if json_:
        print_json(models)
        return
    for loading in health.get("loading", []):
        stderr.print(f"loading {loading}…")
    if not models:
        stderr.print("no model loaded")
        _print_upstreams(health.get("upstreams", []))
        return

    def until(m):
        if m["busy"] or m["active_requests"]:
            return "busy"
        return "forever" if m["keep_alive"] is None else describe(m["expires_in_seconds"])

    def slots(m):
        busy = sum(1 for s in m.get("slots", []) if s["busy"])
        return f"{busy}/{m.get('parallel', 1)} busy"

    def cache(m):
        c = m.get("prompt_cache") or {}
        return f"{human_size(c.get('bytes', 0))} ({c.get('entries', 0)})" if c.get("capacity_bytes") else "off"

    # CONTEXT is per slot: the KV cache holds SLOTS x CONTEXT tokens
    table(["ID", "MEMORY", "CONTEXT", "SLOTS", "GPU LAYERS", "PROMPT CACHE", "ACTIVE", "UNLOADS IN"],
          [[m["id"], human_size(m.get("memory_bytes")), str(m.get("context_length")), slots(m),
            str(m.get("gpu_layers", 0)), cache(m), str(m.get("active_requests", 0)), until(m)]
           for m in models], keep=0)
    _print_upstreams(health.get("upstreams", []))


def _print_upstreams(upstreams: list[dict]) -> None:
    if not upstreams:
        return
    state = {True: "yes", False: "no", None: "not yet"}
    table(["UPSTREAM", "URL", "REACHABLE", "MODELS", "IN FLIGHT", "LAST ERROR"],
          [[u["name"], u["url"], state[u["reachable"]], ", ".join(u["models"]) or "-",
            str(u["in_flight"]) + (f"/{u['max_concurrency']}" if u.get("max_concurrency") else ""),
            u.get("last_error") or "-"] for u in upstreams], keep=0, whole=(1,))


@app.command("pull")
def pull(ref: str = typer.Argument(..., metavar="REF",
                                   help="org/name[:QUANT|:file.gguf], e.g. Qwen/Qwen2.5-7B-Instruct"),
         quant: Optional[str] = typer.Option(None, "--quant", help="e.g. Q5_K_M (default Q4_K_M)"),
         revision: Optional[str] = typer.Option(None, "--revision", help="branch, tag or commit"),
         dry_run: bool = typer.Option(False, "--dry-run", help="show what would be pulled, then stop"),
         json_: bool = typer.Option(False, "--json")):
    """Find a model's GGUF on the Hugging Face Hub, download it resumably, verify, register."""
    from localgw.cli.progress import byte_progress
    from localgw.hub import pull as puller

    store = ModelStore()
    parsed = puller.parse_ref(ref, quant)
    if not dry_run and revision is None and (have := puller.already_pulled(store, parsed)):
        if json_:
            print_json(have.model_dump() | {"downloaded": False})
        else:
            print(have.id)
            stderr.print(f"{have.id} is already pulled ({have.quantization}, {human_size(have.size)})")
        return
    p = puller.plan(parsed, revision)
    info = p.describe()
    if not json_:
        files = ", ".join(f["path"] for f in info["files"])
        stderr.print(f"{info['id']}: {info['quantization'] or 'file'} from {info['repo']}@"
                     f"{info['commit'][:12]}: {files} ({human_size(info['size'])})"
                     + (f", licence {info['license']}" if info["license"] else ""))
    if dry_run:
        if json_:
            print_json(info)
        return
    with byte_progress(info["size"], info["size"] - info["to_download"], quiet=json_) as advance:
        manifest = puller.execute(p, store, revision, on_bytes=advance)
    if json_:
        print_json(manifest.model_dump() | {"downloaded": True})
    else:
        print(manifest.id)
        stderr.print(f"pulled {manifest.id}: verified sha256 of {len(manifest.files)} file(s); "
                     f"serve it with `localgw serve --model {manifest.id}`")


@app.command("catalog")
def catalog(json_: bool = typer.Option(False, "--json")):
    """The built-in list of known models (HF id → GGUF repos, Q4_K_M size)."""
    from localgw.catalog import CATALOG

    if json_:
        print_json([{"id": e.id, "repos": list(e.repos), "q4_k_m_gb": e.q4_k_m_gb,
                     "family": e.family, "notes": e.notes} for e in CATALOG])
        return
    table(["ID", "GGUF REPO", "Q4_K_M", "NOTES"],
          [[e.id, e.repos[0], f"{e.q4_k_m_gb:.1f} GB", e.notes] for e in CATALOG], keep=0, whole=(1,))


@app.command("doctor")
def doctor(json_: bool = typer.Option(False, "--json")):
    """This machine as localgw sees it: llama.cpp build, devices, threads, where things live."""
    from localgw.cli.facts import machine_facts

    facts = machine_facts()
    if json_:
        print_json(facts)
        return
    rows = [["llama.cpp backends", ", ".join(facts["backends"])],
            ["GPU offload", "yes" if facts["gpu_offload"] else "no (CPU build; see README to build for CUDA or Metal)"],
            ["CPUs", str(facts["cpus"])],
            ["default threads", f"{facts['threads']['decode']} decode, {facts['threads']['prompt']} prompt"]]
    rows += [[f"{d['kind']} {d['name']}", f"{human_size(d['free'])} free of {human_size(d['total'])}"]
             for d in facts["devices"]]
    rows += [["LOCALGW_HOME", f"{facts['home']['path']} ({human_size(facts['home']['disk_free'])} free)"],
             ["HF cache", f"{facts['hf_cache']['path']} ({human_size(facts['hf_cache']['disk_free'])} free)"],
             ["llama.cpp", facts["system_info"]]]
    table(["", ""], rows)


@app.command("chat")
def chat(url: str = typer.Option(defaults.SERVER_URL, "--url", help="server base URL (a trailing /v1 is fine)"),
         model: Optional[str] = typer.Option(None, "--model", "-m", help="model id (default: the server's loaded one)"),
         api_key: Optional[str] = typer.Option(None, "--api-key", envvar="LOCALGW_API_KEY")):
    """The terminal chat app, against a running server, or an in-process one when none answers."""
    from localgw import config
    from localgw.cli.inprocess import InProcessServer, server_answers
    from localgw.tui.app import ChatApp
    from localgw.tui.client import HttpChatClient, base_url
    from localgw.tui.history import ChatHistory

    target, notice, server = base_url(url), None, None
    if not server_answers(target, api_key):
        stderr.print(f"no server answers at {url}: starting one in this process…")
        server = InProcessServer(model).start()
        target = server.url
        notice = (f"No server answered at {url}, so localgw started one in this process at "
                  f"{server.url}; it stops when you quit. Log: {server.log_path}")
    history = ChatHistory(config.home() / "chat.sqlite")
    try:
        ChatApp(HttpChatClient(target, api_key), history, model=model, notice=notice).run()
    finally:
        history.close()
        if server is not None:
            server.stop()
