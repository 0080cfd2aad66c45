"""The chat service: a typed request in, a running call out. No HTTP types.

Routes parse a body into a typed request, hand it to the service and render what comes back;
the service does everything between: it checks the request, takes the model, prepares the prompt
and starts the work. It lives in `server/` beside what it drives (the preparation pool and the
limits, the request timer, the router), none of which is HTTP either; it imports no Starlette,
so it runs in-process with a fake manager and runner (tests/unit/test_service.py).

`ChatService` is built once by the app factory (`server.app.create_app`) and kept on
`app.state.service`, with the model manager, the settings, the preparation pool, the metrics and
the `ModelRouter`. Its three doors:

- `start(req: ChatRequest, cancel, where=None)` → `ChatCall` (the typed events of a chat,
  `chat.events`, with their OpenAI renderer, and their closer). `where` is the router's answer
  when the caller asked it already (the OpenAI door peeks at the body's model before parsing it,
  to forward the body as sent); otherwise the router is asked here. Either way the router
  decides once per request: an upstream's model runs through `ModelRouter.start_chat` (its
  chunks read into the same events), a local one here.
- `count(req: ChatRequest, cancel)` → `(PreparedChat, tokens)`: the prompt `start` would run,
  prepared the same way and not run (Anthropic's count_tokens).
- `complete(req: CompletionRequest, cancel)` → `ChatCall` of `text_completion` chunks.

`cancel` is a cancellation signal (`server.cancel.Cancellation`: an `asyncio.Event`, or an HTTP
client's `Disconnect`). The wait for the model (a load, a full queue) and the preparation end at
once when it fires (ClientGone).

The one path for a local model is `_take`: acquire the model (pinned from then on), prepare in
the pool (render, tokenize, check the prompt and the grammar; inline for a small chat), and, for
`start`, submit the job. If the caller goes, or anything fails, on the way, whatever was taken is
given back (`_Held.give_back`: the queued job cancelled and waited out, the model released).
Once a call is returned, its closer does the same at the end: cancel, record the metrics, wait
for the job to leave its slot, release the model with the request's keep-alive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import anyio

from localgw.chat.events import ChatEvents
from localgw.chat.pipeline import PreparedChat, prepare_chat
from localgw.chat.prompt import check_conversation, check_tool_choice, sampling_params
from localgw.chat.requests import ChatRequest, CompletionRequest
from localgw.chat.responses import (REASONING_FIELDS, ChatChunker, TextChunker, Usage,
                                    read_chunks)
from localgw.chat.schema_grammar import JsonSchemaConverter
from localgw.chat.template import CHATML_TEMPLATE
from localgw.engine.types import JobFailed, TokenText
from localgw.errors import LocalgwError
from localgw.server.calls import ChatCall
from localgw.server.cancel import Cancellation, run_until_cancelled
from localgw.server.limits import (SMALL_PROMPT_CHARS, bounded_prompt_tokens, check_prompt_chars,
                                   check_stop)
from localgw.server.metrics import RequestTimer
from localgw.server.router import ModelRouter, Where

T = TypeVar("T")

STOP_WAIT = 5.0  # seconds a cancelled job may take to leave its slot before the model is let go




class ChatService:
    """Chat and text completions on local models, and chats on upstream ones (see above)."""

    def __init__(self, manager, settings, pool, metrics, router: ModelRouter,
                 converter: Callable[[], Any] = JsonSchemaConverter):
        self.manager, self.settings, self.pool = manager, settings, pool
        self.metrics, self.router, self.converter = metrics, router, converter

    async def start(self, req: ChatRequest, cancel: Cancellation, where: Where | None = None,
                    *, request_id: str | None = None) -> ChatCall:
        """Check, render and submit a chat request: the one pipeline behind every chat door."""
        if where is None:
            where = await self.router.place(req.model)
        if where.upstream:
            call = await self.router.start_chat(where, req, cancel, request_id)
            return replace(call, events=read_chunks(call.events, call.usage),
                           openai=self._chunker(req, call.id, call.created))
        _check_chat(req, self.settings)
        timer = RequestTimer()

        async def prepare(held: _Held) -> PreparedChat:
            runner = held.entry.runner
            prepared, tokens = await self.pool.run(
                _prepare_in_thread, runner, req, self.settings, self.converter,
                inline=_small_chat(req))
            thinking = (req.chat_template_kwargs or {}).get("enable_thinking") is not False
            params = sampling_params(
                req, logprobs=req.logprobs, top_logprobs=req.top_logprobs or 0,
                grammar=prepared.grammar, max_output=self.settings.max_output,
                defaults=self.manager.default_sampling(held.entry.manifest, thinking=thinking))
            held.generation = runner.submit(tokens, params, n=req.n, preserve=prepared.preserve)
            return prepared

        held, prepared = await self._take(req.model, cancel, prepare)
        generation = held.generation
        usage = Usage()
        chat_events = ChatEvents(prepared.new_output, usage)

        async def events():
            async for event in _events(generation, timer):
                for out in chat_events.on_event(event):
                    yield out

        chunker = self._chunker(req)
        return ChatCall(events(), usage, chunker.id, chunker.created, req.model,
                        self._closer(timer, held.entry, generation, usage,
                                     req.keep_alive_seconds), openai=chunker)

    def _chunker(self, req: ChatRequest, *ids) -> ChatChunker:
        """The OpenAI renderer of a chat's events (`ids`: the call's id and created, if set)."""
        usage_last = bool(req.stream and req.stream_options and req.stream_options.include_usage)
        return ChatChunker(req.model, usage_last,
                           REASONING_FIELDS[self.settings.reasoning_field], *ids)

    async def count(self, req: ChatRequest,
                    cancel: Cancellation) -> tuple[PreparedChat, list[int]]:
        """The prompt a chat request would run with (its template, its tokens), prepared like
        `start` does (checked, in the pool, dropped if the caller goes) but not run."""
        _check_chat(req, self.settings)

        async def prepare(held: _Held) -> tuple[PreparedChat, list[int]]:
            return await self.pool.run(_prepare_in_thread, held.entry.runner, req,
                                       self.settings, self.converter)

        held, counted = await self._take(req.model, cancel, prepare)
        await held.give_back(self.manager)
        return counted

    async def complete(self, req: CompletionRequest, cancel: Cancellation) -> ChatCall:
        """A text completion on a local model: its prompts run one after another."""
        self.settings.limits.check_count("max_prompts", "the number of prompts",
                                         len(req.prompts), "prompt")
        timer = RequestTimer()

        async def prepare(held: _Held):
            token_lists = await self.pool.run(_tokenize_prompts, held.entry.runner, req.prompts)
            params = sampling_params(req, logprobs=req.logprobs is not None,
                                     top_logprobs=req.logprobs or 0,
                                     defaults=self.manager.default_sampling(held.entry.manifest))
            return token_lists, params

        held, (token_lists, params) = await self._take(req.model, cancel, prepare)
        runner = held.entry.runner
        usage = Usage()
        base = TextChunker(model=req.model, usage=usage)
        current = _CurrentGeneration()

        async def chunks():
            for i, (prompt, tokens) in enumerate(zip(req.prompts, token_lists)):
                chunker = TextChunker(model=req.model, id=base.id, created=base.created,
                                      usage=usage, index_base=i * req.n,
                                      echo_prefix=prompt if req.echo else "")
                current.generation = runner.submit(tokens, params, n=req.n)
                async for event in _events(current.generation, timer):
                    for chunk in chunker.on_event(event):
                        yield chunk
            if req.stream and req.stream_options and req.stream_options.include_usage:
                yield {"id": base.id, "object": "text_completion", "created": base.created,
                       "model": req.model, "choices": [], "usage": usage.to_dict()}

        return ChatCall(chunks(), usage, base.id, base.created, req.model,
                        self._closer(timer, held.entry, current, usage, req.keep_alive_seconds))

    async def _take(self, model_id: str, cancel: Cancellation,
                    prepare: Callable[[_Held], Awaitable[T]]) -> tuple[_Held, T]:
        """Acquire the model and `prepare(held)` on it, both ended at once if the caller goes;
        on any failure or cancellation, whatever was taken is given back before it is raised."""
        held = _Held()

        async def work() -> T:
            held.entry = await self.manager.acquire(model_id)
            return await prepare(held)

        try:
            return held, await run_until_cancelled(cancel, work)
        except BaseException:
            await held.give_back(self.manager)
            raise

    def _closer(self, timer: RequestTimer, entry, generation, usage: Usage,
                keep_alive="default") -> Callable[[], Awaitable[None]]:
        closed = False

        async def close():
            nonlocal closed
            if closed:
                return
            closed = True
            generation.cancel()
            timer.record(self.metrics, usage)
            try:
                await _until_stopped(generation)
            finally:
                await self.manager.release(entry, keep_alive)
        return close


@dataclass
class _Held:
    """What a request holds while it is being prepared, to give back if it never starts."""

    entry: Any = None
    generation: Any = None

    async def give_back(self, manager) -> None:
        with anyio.CancelScope(shield=True):
            if self.generation is not None:
                self.generation.cancel()
                await _until_stopped(self.generation)
            if self.entry is not None:
                await manager.release(self.entry)


class _CurrentGeneration:
    """A prompt list runs one prompt after another: closing the response cancels the current."""

    generation = None

    def cancel(self) -> None:
        if self.generation is not None:
            self.generation.cancel()


async def _events(generation, timer: RequestTimer) -> AsyncIterator:
    async for event in generation:
        if isinstance(event, JobFailed):
            err = event.error
            raise err if isinstance(err, LocalgwError) else LocalgwError(f"generation failed: {err}")
        if isinstance(event, TokenText):
            timer.token()
        yield event
    generation.ended = True  # read by _until_stopped


async def _until_stopped(generation) -> None:
    """Wait for a cancelled generation's end, so the model is idle when it is released: a model
    waiting to be loaded in its place (max_loaded) looks for exactly that when woken by release;
    a cancelled job still holding a slot for one more step would leave it busy, and that load
    would wait on until its load timeout."""
    generation = getattr(generation, "generation", generation)  # a prompt list's current one
    if generation is None or getattr(generation, "ended", False):
        return
    with anyio.move_on_after(STOP_WAIT):
        async for _ in generation:
            pass


# ---- preparation: CPU work, in the pool or inline -----------------------------------------------
def _check_chat(req: ChatRequest, settings) -> None:
    """What a chat request must pass before it takes a model: limits, turns, tool choice."""
    settings.limits.check_chat(req)
    check_conversation(req.messages)
    check_tool_choice(req)


def _render(runner, req: ChatRequest, settings, converter) -> PreparedChat:
    template = (settings.chat_template or runner.metadata.get("tokenizer.chat_template")
                or CHATML_TEMPLATE)
    return prepare_chat(req, template, factory=converter,
                        bos_token=runner.bos_text, eos_token=runner.eos_text)


def _prepare_in_thread(runner, req: ChatRequest, settings, converter,
                       stop: threading.Event) -> tuple[PreparedChat, list[int]]:
    """Everything before decoding, cheapest check first; stops between steps if the caller went."""
    check_prompt_chars([m.text() or "" for m in req.messages], runner)
    check_stop(stop)
    prepared = _render(runner, req, settings, converter)
    tokens = bounded_prompt_tokens(runner, prepared.prompt, stop)
    check_stop(stop)
    runner.check_prompt(tokens)
    if prepared.grammar:
        runner.check_grammar(prepared.grammar)  # compiled once per grammar; submit() then finds it known
    return prepared, tokens


def _small_chat(req: ChatRequest) -> bool:
    """Cheap enough to prepare on the event loop: little text and no grammar to build."""
    if req.tools or req.response_format is not None:
        return False
    return sum(len(m.text() or "") for m in req.messages) <= SMALL_PROMPT_CHARS


def _tokenize_prompts(runner, prompts: list[str], stop: threading.Event) -> list[list[int]]:
    token_lists = []
    for prompt in prompts:
        check_prompt_chars([prompt], runner, param="prompt")
        tokens = bounded_prompt_tokens(runner, prompt, stop, param="prompt")
        runner.check_prompt(tokens)
        token_lists.append(tokens)
    return token_lists
