"""Prometheus metrics, in a registry of the app's own (two apps in one process never clash)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily

ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics",
          "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/embeddings",
          "/v1/rerank", "/rerank"}


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, manager):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("localgw_requests_total", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.prompt_tokens = Counter("localgw_prompt_tokens_total", "Prompt tokens processed",
                                     registry=r)
        self.cached_tokens = Counter("localgw_cached_prompt_tokens_total",
                                     "Prompt tokens reused from the KV cache", registry=r)
        self.completion_tokens = Counter("localgw_completion_tokens_total", "Tokens generated",
                                         registry=r)
        self.ttft = Histogram("localgw_time_to_first_token_seconds", "Request to first token",
                              buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60),
                              registry=r)
        self.decode_speed = Histogram("localgw_decode_tokens_per_second",
                                      "Decode speed per request",
                                      buckets=(1, 5, 10, 20, 40, 60, 80, 100, 150, 200, 400, 1000),
                                      registry=r)
        queue = Gauge("localgw_queue_depth", "Requests waiting for a model", registry=r)
        queue.set_function(lambda: sum(e.runner.queued for e in list(manager.loaded.values())))
        loaded = Gauge("localgw_loaded_models", "Models loaded", registry=r)
        loaded.set_function(lambda: len(manager.loaded))
        self.upstreams = UpstreamMetrics(r)
        self._engine_gauges(manager, r)

    @staticmethod
    def _engine_gauges(manager, registry) -> None:
        """Slots and the host-RAM prompt cache, summed over the loaded models."""
        def total(fn):
            return lambda: sum(fn(e.runner) for e in list(manager.loaded.values()))
        gauges = {
            "localgw_slots": ("Slots of the loaded models", lambda r: r.n_parallel),
            "localgw_slots_busy": ("Slots running a request",
                                   lambda r: sum(s["busy"] for s in r.describe_slots())),
            "localgw_prompt_cache_bytes": ("Bytes held by the prompt cache", lambda r: r.cache.bytes),
            "localgw_prompt_cache_entries": ("Sequences held by the prompt cache",
                                             lambda r: len(r.cache.entries)),
            "localgw_prompt_cache_hits": ("Prompts restored from the prompt cache",
                                          lambda r: r.cache.stats.hits),
            "localgw_prompt_cache_misses": ("Prompts the prompt cache could not help",
                                            lambda r: r.cache.stats.misses),
            "localgw_prompt_cache_evictions": ("Prompt cache entries dropped for room",
                                               lambda r: r.cache.stats.evictions),
            "localgw_prompt_tokens_evaluated": ("Prompt tokens decoded (not reused)",
                                                lambda r: r.prompt_tokens_evaluated),
        }
        for name, (doc, fn) in gauges.items():
            Gauge(name, doc, registry=registry).set_function(total(fn))
        registry.register(SpecCounters(manager))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class SpecCounters:
    """Speculative decoding's draft tokens, verified and kept, summed over the loaded models."""

    def __init__(self, manager):
        self.manager = manager

    def collect(self):
        runners = [e.runner.speculative for e in list(self.manager.loaded.values())]
        for key, doc in (("drafted", "Draft tokens verified by speculative decoding"),
                         ("accepted", "Draft tokens kept by speculative decoding")):
            yield CounterMetricFamily(f"localgw_spec_{key}_tokens", doc,
                                      value=sum(r[key] for r in runners))


class UpstreamMetrics:
    """Per-upstream series, labelled by the upstream's name (the forwarding code's Recorder)."""

    def __init__(self, r: CollectorRegistry):
        self.requests = Counter("localgw_upstream_requests_total",
                                "Requests forwarded, by upstream and its HTTP status",
                                ["upstream", "status"], registry=r)
        self.errors = Counter("localgw_upstream_errors_total",
                              "Forwarding faults: unreachable, rejected, broken, full",
                              ["upstream", "kind"], registry=r)
        self.latency = Histogram("localgw_upstream_response_seconds",
                                 "Request sent to the upstream's status line", ["upstream"],
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                          5, 10, 30), registry=r)
        self.duration = Histogram("localgw_upstream_request_seconds",
                                  "Request sent to the upstream's last byte", ["upstream"],
                                  buckets=(.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120,
                                           300, 600), registry=r)
        self.bytes = Counter("localgw_upstream_bytes_total", "Bytes sent to / received from upstreams",
                             ["upstream", "direction"], registry=r)
        self.in_flight = Gauge("localgw_upstream_in_flight", "Requests running on each upstream",
                               ["upstream"], registry=r)

    def watch(self, name: str, in_flight) -> None:
        self.in_flight.labels(name).set_function(in_flight)

    def answered(self, name: str, status: int, seconds: float) -> None:
        self.requests.labels(name, str(status)).inc()
        self.latency.labels(name).observe(seconds)

    def failed(self, name: str, kind: str) -> None:
        self.errors.labels(name, kind).inc()

    def finished(self, name: str, seconds: float, sent: int, received: int) -> None:
        self.duration.labels(name).observe(seconds)
        self.bytes.labels(name, "sent").inc(sent)
        self.bytes.labels(name, "received").inc(received)


class RequestTimer:
    """Collects one generation's timings: time to first token and decode speed."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.tokens = 0

    def token(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.tokens += 1

    def record(self, metrics: Metrics, usage) -> None:
        metrics.prompt_tokens.inc(usage.prompt_tokens)
        metrics.cached_tokens.inc(usage.cached_tokens)
        metrics.completion_tokens.inc(usage.completion_tokens)
        if self.first is not None:
            metrics.ttft.observe(self.first - self.start)
            if self.tokens > 1 and self.last > self.first:
                metrics.decode_speed.observe((self.tokens - 1) / (self.last - self.first))


class MetricsMiddleware:
    """Counts every response by route and status (unknown paths folded into one label)."""

    def __init__(self, app, metrics_getter):
        self.app, self.get = app, metrics_getter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path in ROUTES else ("/v1/models/{id}" if path.startswith("/v1/models/")
                                             else "other")

        async def counting_send(message):
            if message["type"] == "http.response.start":
                metrics = self.get()
                if metrics is not None:
                    metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
