"""Upstream settings, from `serve --upstream [NAME=]URL` and `$LOCALGW_HOME/upstreams.toml`.

An API key is never part of the config: only the *name* of the environment variable that holds
it, read when the upstream's client is built (see `client.UpstreamClient`).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from localgw.durations import parse_duration
from localgw.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_TIMEOUT = 600.0  # seconds without a byte from the upstream (a long prompt on a big model)
FILE_NAME = "upstreams.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
_KEYS = {"name", "url", "api_key_env", "models", "max_concurrency", "timeout"}


@dataclass(frozen=True)
class UpstreamConfig:
    name: str
    url: str                          # the OpenAI base URL, ending in /v1
    api_key_env: str | None = None    # the variable holding the key, never the key
    models: tuple[str, ...] | None = None  # allow-list; None: whatever /v1/models lists
    max_concurrency: int | None = None     # requests in flight at once; None: no limit
    timeout: float = DEFAULT_TIMEOUT       # seconds to wait for the upstream's next byte

    @property
    def shown_url(self) -> str:
        """The URL without any user:password part, for messages and /health."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def base_url(url: str, where: str) -> str:
    """An http(s) URL, normalised to end in /v1 (a bare `http://host:port` is accepted)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: {url!r} is not an http:// or https:// URL")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def default_name(url: str) -> str:
    """host:port of the URL: a name good enough for a one-off `--upstream URL`."""
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "")


def parse_flag(value: str) -> UpstreamConfig:
    """`serve --upstream [NAME=]URL`; the name defaults to the URL's host:port."""
    name, sep, url = value.partition("=")
    if not sep or "://" in name:
        name, url = "", value
    url = base_url(url, f"--upstream {value}")
    name = name or default_name(url)
    return UpstreamConfig(name=_checked_name(name, f"--upstream {value}"), url=url)


def _checked_name(name: str, where: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: the upstream name {name!r} must be letters, digits and . _ : -"
                          " (it appears in model ids as NAME/ID)")
    return name


def _entry(raw: dict, where: str) -> UpstreamConfig:
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(_KEYS))}")
    if not isinstance(raw.get("url"), str):
        raise ConfigError(f"{where}: `url` is required (an OpenAI-compatible base URL)")
    url = base_url(raw["url"], where)
    name = raw.get("name") or default_name(url)
    models = raw.get("models")
    if models is not None and (not isinstance(models, list)
                               or not all(isinstance(m, str) and m for m in models)):
        raise ConfigError(f"{where}: `models` must be a list of model ids")
    limit = raw.get("max_concurrency")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"{where}: `max_concurrency` must be a whole number ≥ 1")
    env = raw.get("api_key_env")
    if env is not None and (not isinstance(env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env)):
        raise ConfigError(f"{where}: `api_key_env` is the *name* of an environment variable "
                          "(the key itself never goes in this file)")
    try:
        timeout = parse_duration(raw.get("timeout", DEFAULT_TIMEOUT))
    except ValueError as exc:
        raise ConfigError(f"{where}: `timeout`: {exc}") from None
    if not timeout:
        raise ConfigError(f"{where}: `timeout` must be more than 0 (e.g. \"10m\")")
    return UpstreamConfig(name=_checked_name(str(name), where), url=url, api_key_env=env,
                          models=tuple(models) if models is not None else None,
                          max_concurrency=limit, timeout=timeout)


def read_file(path: Path) -> list[UpstreamConfig]:
    """`[[upstream]]` tables of an upstreams.toml; an absent file is no upstreams."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    entries = data.get("upstream", [])
    unknown = set(data) - {"upstream"}
    if unknown or not isinstance(entries, list):
        raise ConfigError(f"{path}: expected only [[upstream]] tables")
    return [_entry(raw, f"{path}, upstream {i + 1}") for i, raw in enumerate(entries)]


def load(flags: list[str], home: Path) -> list[UpstreamConfig]:
    """The file's upstreams, then the flags', in order (the order failover tries them in)."""
    configs = read_file(home / FILE_NAME) + [parse_flag(f) for f in flags]
    seen: set[str] = set()
    for c in configs:
        if c.name in seen:
            raise ConfigError(f"two upstreams are named {c.name!r}: give each its own name "
                              "(NAME=URL, or `name` in upstreams.toml)")
        seen.add(c.name)
    return configs
