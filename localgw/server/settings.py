"""Everything `localgw serve` can be told, in one place, passed to `create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field

from localgw import defaults
from localgw.engine.types import LoadOptions
from localgw.server.limits import Limits
from localgw.upstreams.config import UpstreamConfig

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class ServerSettings:
    host: str = defaults.HOST
    port: int = defaults.PORT
    models: list[str] = field(default_factory=list)
    api_key: str | None = None
    insecure: bool = False
    load: LoadOptions = field(default_factory=LoadOptions)
    max_loaded: int = defaults.MAX_LOADED
    keep_alive: float | None = defaults.KEEP_ALIVE_SECONDS  # idle seconds; None: forever
    load_wait: float = defaults.LOAD_WAIT_SECONDS
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    cors_origins: list[str] = field(default_factory=list)  # web pages' origins beyond loopback
    allowed_hosts: list[str] = field(default_factory=list)  # Host names beyond the bind's own
    chat_template: str | None = None  # a template text overriding every model's own
    reasoning_field: str = defaults.REASONING_FIELD  # reasoning_content | reasoning | both
    max_output: int = defaults.MAX_OUTPUT_TOKENS  # a reply's cap when no max_tokens
    limits: Limits = field(default_factory=Limits)  # per-request bounds (serve --limit NAME=N)
    upstreams: list[UpstreamConfig] = field(default_factory=list)  # engines whose models we serve too

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")
