"""A fake engine for in-process tests of the service and the routes: no llama_cpp, no weights.

`FakeRunner` has the runner's public surface that the server uses (`submit`, `tokenize`,
`prompt_tokens`, `check_prompt`, `check_grammar`, `n_ctx`, `metadata`, ...). It tokenizes by
characters (one token per character, ids below 256) and answers every prompt with the same
reply, one token per character, `delay` seconds apart. The real `ModelManager` loads it through
its runner factory, so acquire, release and keep-alive are the real ones.
"""

from __future__ import annotations

import asyncio

from localgw.engine.fit import GIB, Device
from localgw.engine.prompt_cache import PromptCache
from localgw.engine.types import ChoiceDone, JobFailed, PromptDone, TokenText
from localgw.errors import ContextLengthExceeded, InvalidRequest, QueueFull
from localgw.manager import ModelManager
from localgw.store import ModelStore
from tests.helpers import smollm2_path

REPLY = "Hello there!"


class FakeGeneration:
    """The caller's end of a fake job: its events, one per `delay`; `cancel()` ends them."""

    def __init__(self, events: list, delay: float):
        self.events, self.delay = list(events), delay
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.cancelled or not self.events:
            raise StopAsyncIteration
        if self.delay and isinstance(self.events[0], TokenText):
            await asyncio.sleep(self.delay)
        if self.cancelled:
            raise StopAsyncIteration
        return self.events.pop(0)


class FakeRunner:
    """A model that says REPLY (cut at max_tokens) to everything. Settings are class attributes,
    so a test changes them before the manager loads the model."""

    n_ctx = 512
    reply = REPLY
    delay = 0.0
    queue_full = False
    fail_with: Exception | None = None  # sent as JobFailed after the first token

    def __init__(self, model_id: str, path: str, options):
        self.model_id, self.options = model_id, options
        self.busy, self.queued, self.broken, self.closed = False, 0, None, False
        self.metadata: dict = {}
        self.bos_text, self.eos_text = "", ""
        self.n_vocab = 256
        self.n_parallel, self.n_gpu_layers, self.kv_unified = 1, 0, False
        self.memory_bytes, self.prompt_tokens_evaluated = 0, 0
        self.speculative = {"mode": "off", "drafted": 0, "accepted": 0}
        self.cache = PromptCache(0)
        self.jobs: list[tuple[list[int], object, int]] = []
        self.generations: list[FakeGeneration] = []

    def token_text(self, token: int) -> str:
        return chr(token)

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]:
        return [ord(c) % self.n_vocab for c in text]

    def prompt_tokens(self, prompt: str) -> list[int]:
        return self.tokenize(prompt)

    def check_prompt(self, tokens: list[int]) -> None:
        if len(tokens) >= self.n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, your "
                f"prompt is {len(tokens)} tokens.", param="messages")

    def check_grammar(self, gbnf: str) -> None:
        pass

    def describe_slots(self) -> list[dict]:
        return [{"id": 0, "busy": self.busy, "cached_tokens": 0}]

    def submit(self, tokens: list[int], params, n: int = 1,
               preserve: tuple[str, ...] = ()) -> FakeGeneration:
        bad = [t for t in params.logit_bias if not 0 <= t < self.n_vocab]
        if bad:
            raise InvalidRequest(f"logit_bias names token id {bad[0]}, outside this model's "
                                 f"vocabulary of {self.n_vocab}", param="logit_bias")
        if self.queue_full:
            raise QueueFull(f"0 requests are already waiting for {self.model_id}; retry shortly",
                            headers={"Retry-After": "1"})
        self.jobs.append((list(tokens), params, n))
        reply = self.reply[:params.max_tokens] if params.max_tokens else self.reply
        reason = "length" if len(reply) < len(self.reply) else "stop"
        events: list = [PromptDone(len(tokens), 0)]
        for index in range(n):
            events += [TokenText(index, c) for c in reply]
            if self.fail_with is not None:
                events = events[:2] + [JobFailed(self.fail_with)]
                break
            events.append(ChoiceDone(index, reason, len(reply)))
        generation = FakeGeneration(events, self.delay)
        self.generations.append(generation)
        return generation

    def abort_all(self, error: Exception) -> None:
        for generation in self.generations:
            generation.events = [JobFailed(error)]

    def close(self) -> None:
        self.closed = True


def fake_manager(tmp_path, runner: type = FakeRunner, **kw) -> ModelManager:
    """The real ModelManager over an empty store and one model (SmolLM2's GGUF header, read but
    never loaded), whose runners are `runner`s."""
    return ModelManager(ModelStore(tmp_path), model_args=[str(smollm2_path())], factory=runner,
                        devices=lambda: [Device("RAM", "cpu", 16 * GIB, 8 * GIB)],
                        offload_supported=lambda: False, **kw)
