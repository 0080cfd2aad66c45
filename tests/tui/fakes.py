"""A scripted ChatClient for fast, deterministic TUI tests."""

from __future__ import annotations

import asyncio

from localgw.tui.client import ClientError, Delta, Finished, ModelInfo


class FakeClient:
    url = "http://fake"

    def __init__(self, script=None, models=None, error: ClientError | None = None, block=False,
                 health=None, first_delay: float = 0.0):
        self.script = script or [Delta(content="Hello **there**!")]
        self.models = models or [ModelInfo("org/small", 8192, "Q4_K_M", 98_000_000, ["json_mode"], True),
                                 ModelInfo("org/other", 4096, "Q8_0", 1_500_000_000, ["tools", "reasoning"])]
        self.error = error
        self.block = block
        self.health_reply = health or {"status": "ok", "models": [], "loading": []}
        self.first_delay = first_delay
        self.requests: list[dict] = []
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

    async def list_models(self):
        if self.error and self.error.status is None:
            raise self.error
        return self.models

    async def health(self):
        return self.health_reply

    async def stream_chat(self, model, messages, *, temperature, max_tokens):
        self.requests.append({"model": model, "messages": messages, "temperature": temperature,
                              "max_tokens": max_tokens})
        if self.error:
            raise self.error
        if model not in [m.id for m in self.models]:  # as localgw answers
            raise ClientError(f"The model '{model}' does not exist. Available: "
                              + ", ".join(m.id for m in self.models), 404, "model_not_found")
        self.started.set()
        await asyncio.sleep(self.first_delay)  # e.g. the server is still loading the model
        try:
            for event in self.script:
                await asyncio.sleep(0)
                yield event
            if self.block:
                await asyncio.Event().wait()  # a long generation, until cancelled
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.set()
            raise
        yield Finished("stop", {"prompt_tokens": 12, "completion_tokens": 3,
                                "prompt_tokens_details": {"cached_tokens": 8}})
