"""Upstreams: OpenAI-compatible engines (vLLM, SGLang, a hosted gateway, another localgw) whose
models localgw serves beside its own.

`config` reads `serve --upstream` and `$LOCALGW_HOME/upstreams.toml`; `registry` keeps each
upstream's model list fresh and resolves a model id to the upstreams that serve it; `forward`
is the one place that talks to them (one pooled httpx client per upstream) and turns every way
they can fail into a named `UpstreamError`.
"""
