"""`serve`'s command-line values turned into `ServerSettings`: each option's parsing and checks.

`cli/app.py` declares the options; a value that does not parse is a `typer.BadParameter` naming
its option, an unreadable `--chat-template` a `StoreError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from localgw import defaults
from localgw.errors import StoreError
from localgw.server.settings import ServerSettings


def serve_settings(*, host: str | None, port: int | None, model: list[str], api_key: str | None,
                   ctx: int | None, gpu_layers: int | None, threads: int | None, max_loaded: int,
                   keep_alive: str, max_queue: int, max_body: int, chat_template: Path | None,
                   insecure: bool, allowed_hosts: list[str], cors_origins: list[str],
                   reasoning_field: str, limit: list[str], max_output: int, parallel: int | None,
                   cache_ram: str | None, flash_attn: str, kv_unified: bool,
                   spec: str, spec_max: int, draft_model: str | None,
                   upstream: list[str]) -> ServerSettings:
    """The settings `serve`'s options describe (environment defaults for host and port)."""
    from localgw import config
    from localgw.engine.types import LoadOptions
    from localgw.upstreams import config as upstreams

    return ServerSettings(
        host=host or os.environ.get("LOCALGW_HOST", defaults.HOST),
        port=port if port is not None else int(os.environ.get("LOCALGW_PORT", defaults.PORT)),
        models=model, api_key=api_key or None, insecure=insecure,
        allowed_hosts=_comma_list(allowed_hosts), cors_origins=_comma_list(cors_origins),
        load=LoadOptions(n_ctx=ctx, n_threads=threads, n_gpu_layers=gpu_layers, max_queue=max_queue,
                         n_parallel=parallel, cache_ram=_cache_ram(cache_ram),
                         flash_attn=_flash_attn(flash_attn), kv_unified=kv_unified,
                         spec=_spec(spec, draft_model), spec_max=spec_max,
                         draft_path=draft_model),
        max_output=max_output,
        max_loaded=max_loaded, keep_alive=_keep_alive(keep_alive), max_body_bytes=max_body,
        chat_template=_read_template(chat_template), reasoning_field=_reasoning_field(reasoning_field),
        limits=_limits(limit),
        upstreams=upstreams.load(upstream, config.home()))


def _comma_list(values: list[str]) -> list[str]:
    """A repeatable option whose values may also be comma-separated lists."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _flash_attn(value: str) -> bool | None:
    choices = {"auto": None, "on": True, "off": False}
    if value.lower() not in choices:
        raise typer.BadParameter(f"{value!r} is not auto, on or off", param_hint="--flash-attn")
    return choices[value.lower()]


def _spec(value: str, draft_model: str | None) -> str:
    choices = defaults.SPEC_MODES
    if value.lower() not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}",
                                 param_hint="--spec")
    if value.lower() == "draft" and not draft_model:
        raise typer.BadParameter("draft needs --draft-model ID_OR_PATH", param_hint="--spec")
    return value.lower()


def _limits(pairs: list[str]):
    from localgw.server.limits import Limits
    try:
        return Limits().with_overrides(pairs)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--limit") from None


def _cache_ram(value: str | None) -> int | None:
    from localgw.durations import parse_size
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cache-ram") from None


def _keep_alive(value: str) -> float | None:
    from localgw.durations import parse_duration
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--keep-alive") from None


def _reasoning_field(value: str) -> str:
    if value not in ("both", "reasoning_content", "reasoning"):
        raise typer.BadParameter("use reasoning_content, reasoning or both", param_hint="--reasoning-field")
    return value


def _read_template(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"--chat-template {path}: {exc.strerror}") from None
