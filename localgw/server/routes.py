"""Route handlers: parse, hand to the engine, shape the answer. No llama.cpp here."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from localgw.chat.formats import chat_format
from localgw.chat.output import REASONING_FIELDS
from localgw.chat.pipeline import PreparedChat, prepare_chat
from localgw.chat.prompt import check_conversation, check_tool_choice, sampling_params
from localgw.chat.requests import ChatRequest, CompletionRequest, parse_body
from localgw.chat.responses import ChatChunker, TextChunker, Usage, collect_chat, collect_text
from localgw.chat.template import CHATML_TEMPLATE
from localgw.chat.schema_grammar import JsonSchemaConverter
from localgw.engine.types import JobFailed, TokenText
from localgw.errors import LocalgwError
from localgw.server.limits import (SMALL_BODY, SMALL_PROMPT_CHARS, PreparePool,
                                   bounded_prompt_tokens, check_prompt_chars, check_stop)
from localgw.server.forwarding import (forward_if_upstream, start_upstream_chat, upstream_model,
                                       upstream_models, upstream_targets)
from localgw.server.calls import ChatCall
from localgw.server.metrics import RequestTimer
from localgw.server.streaming import ClientGone, EventStreamResponse, run_until_disconnect

SAMPLING_PARAMETERS = ["temperature", "top_p", "top_k", "min_p", "stop", "seed",
                       "frequency_penalty", "presence_penalty", "repetition_penalty",
                       "logit_bias", "logprobs", "top_logprobs", "n", "max_tokens"]


def supported_features(manifest, template_override: str | None = None) -> list[str]:
    """What the model's template supports, plus what every model gets from the grammar."""
    features = []
    if template_override is not None:
        fmt = chat_format(template_override)
        tools, reasoning = fmt.native_tools, fmt.reasoning is not None
    else:
        tools, reasoning = manifest.supports_tools, manifest.supports_reasoning
    features += ["tools"] if tools else []
    features += ["json_mode", "structured_outputs"]
    features += ["reasoning"] if reasoning else []
    return features + ["logprobs"]


def model_object(manifest, loaded=None, template_override: str | None = None,
                 default_sampling: dict | None = None, max_output: int | None = None) -> dict:
    n_ctx = loaded.runner.n_ctx if loaded else manifest.context_length
    features = supported_features(manifest, template_override)
    return {
        "id": manifest.id, "object": "model",
        "created": int(time.mktime(time.strptime(manifest.created_at[:19], "%Y-%m-%dT%H:%M:%S")))
        if manifest.created_at else 0,
        "owned_by": manifest.id.split("/")[0] if "/" in manifest.id else "local",
        "context_length": n_ctx,
        "max_output_length": min(max_output, n_ctx) if max_output and n_ctx else n_ctx,
        "quantization": manifest.quantization,
        "hugging_face_id": manifest.hugging_face_id or (manifest.id if "/" in manifest.id else None),
        "input_modalities": ["text"], "output_modalities": ["text"],
        "supported_sampling_parameters": SAMPLING_PARAMETERS,
        "supported_features": features,
        "default_sampling": default_sampling or {},
        "size": manifest.size, "loaded": loaded is not None,
    }


async def list_models(request: Request) -> JSONResponse:
    manager = request.app.state.manager
    override = request.app.state.settings.chat_template
    max_output = request.app.state.settings.max_output
    manifests = manager.manifests()
    data = [model_object(m, manager.loaded.get(m.id), override,
                         manager.default_sampling(m).values, max_output)
            for m in manifests]
    data += upstream_models(request, {m.id for m in manifests})
    return JSONResponse({"object": "list", "data": data})


async def get_model(request: Request) -> JSONResponse:
    manager = request.app.state.manager
    if (upstream := await upstream_model(request, request.path_params["model_id"])) is not None:
        return JSONResponse(upstream)
    manifest = manager.manifest(request.path_params["model_id"])
    return JSONResponse(model_object(manifest, manager.loaded.get(manifest.id),
                                     request.app.state.settings.chat_template,
                                     manager.default_sampling(manifest).values,
                                     request.app.state.settings.max_output))


async def health(request: Request) -> JSONResponse:
    manager = request.app.state.manager
    loaded = [e.describe() for e in list(manager.loaded.values())]
    status = "shutting_down" if manager.closing else "ok"
    return JSONResponse({"status": status, "models": loaded, "loading": sorted(manager.loading),
                         "available": [m.id for m in manager.manifests()],
                         "upstreams": request.app.state.upstreams.describe()},
                        status_code=503 if manager.closing else 200)


async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client left while its request was prepared or waited for its model: no bug, no reader."""
    return Response(status_code=499)


def _pool(request: Request) -> PreparePool:
    return request.app.state.prepare_pool


def _parse_in_thread(model, body: bytes, limits, stop: threading.Event):
    return parse_body(model, body, limits)


async def parse_request(request: Request, model: type):
    """Read and validate the JSON body: a big one off the event loop, dropped if the client leaves."""
    body = await request.body()  # a JSON body: middleware.BrowserGuard saw its Content-Type
    limits = request.app.state.settings.limits
    if len(body) < SMALL_BODY:
        return parse_body(model, body, limits)
    return await run_until_disconnect(
        request.receive, lambda: _pool(request).run(_parse_in_thread, model, body, limits))


async def _events(generation, timer: RequestTimer) -> AsyncIterator:
    async for event in generation:
        if isinstance(event, JobFailed):
            err = event.error
            raise err if isinstance(err, LocalgwError) else LocalgwError(f"generation failed: {err}")
        if isinstance(event, TokenText):
            timer.token()
        yield event
    generation.ended = True  # read by _until_stopped


STOP_WAIT = 5.0  # seconds a cancelled job may take to leave its slot before the model is let go


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


def _closer(request: Request, entry, generation, usage: Usage, keep_alive="default"):
    app = request.app
    timer = request.state.timer
    closed = False

    async def close():
        nonlocal closed
        if closed:
            return
        closed = True
        generation.cancel()
        timer.record(app.state.metrics, usage)
        try:
            await _until_stopped(generation)
        finally:
            await app.state.manager.release(entry, keep_alive)
    return close


async def respond(request: Request, *, chunks: AsyncIterator[dict], close, stream: bool,
                  collect, stream_response=EventStreamResponse) -> Response:
    """Stream chunks as SSE, or collect them into one JSON body; either way `close()` at the end."""
    if stream:
        return stream_response(chunks, close)
    try:
        items = await run_until_disconnect(request.receive, lambda: _gather(chunks))
        return JSONResponse(collect(items))
    except ClientGone:
        return Response(status_code=499)
    finally:
        await close()


async def _gather(chunks: AsyncIterator[dict]) -> list[dict]:
    return [chunk async for chunk in chunks]


def _render(runner, req: ChatRequest, settings) -> PreparedChat:
    template = (settings.chat_template or runner.metadata.get("tokenizer.chat_template")
                or CHATML_TEMPLATE)
    return prepare_chat(req, template, factory=JsonSchemaConverter,
                        bos_token=runner.bos_text, eos_token=runner.eos_text,
                        reasoning_fields=REASONING_FIELDS[settings.reasoning_field])


def prepare_prompt(runner, req: ChatRequest, settings) -> tuple[PreparedChat, list[int]]:
    """Render the request with the model's template and tokenize it (CPU work, no decoding)."""
    prepared = _render(runner, req, settings)
    return prepared, bounded_prompt_tokens(runner, prepared.prompt)


def _prepare_in_thread(runner, req: ChatRequest, settings,
                       stop: threading.Event) -> tuple[PreparedChat, list[int]]:
    """Everything before decoding, cheapest check first; stops between steps if the client left."""
    check_prompt_chars([m.text() or "" for m in req.messages], runner)
    check_stop(stop)
    prepared = _render(runner, req, settings)
    tokens = bounded_prompt_tokens(runner, prepared.prompt, stop)
    check_stop(stop)
    runner.check_prompt(tokens)
    check_grammar = getattr(runner, "check_grammar", None)
    if prepared.grammar and check_grammar is not None:
        check_grammar(prepared.grammar)  # compiled once per grammar; submit() then finds it known
    return prepared, tokens


def _small_chat(req: ChatRequest) -> bool:
    """Cheap enough to prepare on the event loop: little text and no grammar to build."""
    if req.tools or req.response_format is not None:
        return False
    return sum(len(m.text() or "") for m in req.messages) <= SMALL_PROMPT_CHARS


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


def _check_chat(req: ChatRequest, settings) -> None:
    """What a chat request must pass before it takes a model: limits, turns, tool choice."""
    settings.limits.check_chat(req)
    check_conversation(req.messages)
    check_tool_choice(req)


async def start_chat(request: Request, req: ChatRequest) -> ChatCall:
    """Check, render and submit a chat request: the one pipeline behind every chat front door.

    Rendering, tokenizing and grammar work run in the preparation pool; the wait for the model
    (a load, a full queue) and the preparation end at once if the client disconnects (ClientGone),
    and whatever was taken (the model, a queued job) is given back.
    """
    if targets := await upstream_targets(request, req.model):
        return await start_upstream_chat(request, targets, req)
    app = request.app
    settings = app.state.settings
    manager = app.state.manager
    _check_chat(req, settings)
    request.state.timer = timer = RequestTimer()
    held = _Held()

    async def prepare() -> PreparedChat:
        held.entry = await manager.acquire(req.model)
        runner = held.entry.runner
        prepared, tokens = await _pool(request).run(_prepare_in_thread, runner, req, settings,
                                                    inline=_small_chat(req))
        thinking = (req.chat_template_kwargs or {}).get("enable_thinking") is not False
        params = sampling_params(req, logprobs=req.logprobs, top_logprobs=req.top_logprobs or 0,
                                 grammar=prepared.grammar, max_output=settings.max_output,
                                 defaults=manager.default_sampling(held.entry.manifest,
                                                                   thinking=thinking))
        held.generation = runner.submit(tokens, params, n=req.n, preserve=prepared.preserve)
        return prepared

    try:
        prepared = await run_until_disconnect(request.receive, prepare)
    except BaseException:
        await held.give_back(manager)
        raise
    entry, generation = held.entry, held.generation
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    chunker = ChatChunker(model=req.model, new_output=prepared.new_output,
                          include_usage=include_usage)

    async def chunks():
        async for event in _events(generation, timer):
            for chunk in chunker.on_event(event):
                yield chunk
        if req.stream and include_usage:
            yield chunker.usage_chunk()

    return ChatCall(chunks(), chunker.usage, chunker.id, chunker.created, req.model,
                    _closer(request, entry, generation, chunker.usage, req.keep_alive_seconds))


async def count_prompt(request: Request, req: ChatRequest) -> tuple[PreparedChat, list[int]]:
    """The prompt a chat request would run with (its template, its tokens), prepared like
    `start_chat` does — checked, in the pool, dropped if the client leaves — but not run."""
    settings = request.app.state.settings
    manager = request.app.state.manager
    _check_chat(req, settings)
    held = _Held()

    async def prepare():
        held.entry = await manager.acquire(req.model)
        return await _pool(request).run(_prepare_in_thread, held.entry.runner, req, settings)

    try:
        return await run_until_disconnect(request.receive, prepare)
    finally:
        await held.give_back(manager)


async def chat_completions(request: Request) -> Response:
    if (forwarded := await forward_if_upstream(request, "chat/completions")) is not None:
        return forwarded
    req: ChatRequest = await parse_request(request, ChatRequest)
    call = await start_chat(request, req)
    return await respond(request, chunks=call.chunks, close=call.close, stream=req.stream,
                         collect=lambda items: collect_chat(items, call.usage)
                         | ({"id": call.id, "created": call.created, "model": call.model}))


class _CurrentGeneration:
    """A prompt list runs one prompt after another: closing the response cancels the current."""

    generation = None

    def cancel(self) -> None:
        if self.generation is not None:
            self.generation.cancel()


def _tokenize_prompts(runner, prompts: list[str], stop: threading.Event) -> list[list[int]]:
    token_lists = []
    for prompt in prompts:
        check_prompt_chars([prompt], runner, param="prompt")
        tokens = bounded_prompt_tokens(runner, prompt, stop, param="prompt")
        runner.check_prompt(tokens)
        token_lists.append(tokens)
    return token_lists


async def completions(request: Request) -> Response:
    if (forwarded := await forward_if_upstream(request, "completions")) is not None:
        return forwarded
    req: CompletionRequest = await parse_request(request, CompletionRequest)
    app = request.app
    manager = app.state.manager
    app.state.settings.limits.check_count("max_prompts", "the number of prompts",
                                          len(req.prompts), "prompt")
    request.state.timer = timer = RequestTimer()
    held = _Held()

    async def prepare():
        held.entry = await manager.acquire(req.model)
        token_lists = await _pool(request).run(_tokenize_prompts, held.entry.runner, req.prompts)
        params = sampling_params(req, logprobs=req.logprobs is not None,
                                 top_logprobs=req.logprobs or 0,
                                 defaults=manager.default_sampling(held.entry.manifest))
        return token_lists, params

    try:
        token_lists, params = await run_until_disconnect(request.receive, prepare)
    except BaseException:
        await held.give_back(manager)
        raise
    entry = held.entry
    runner = entry.runner
    usage = Usage()
    base = TextChunker(model=req.model, usage=usage)
    current = _CurrentGeneration()

    async def chunks():
        for i, (prompt, tokens) in enumerate(zip(req.prompts, token_lists)):
            chunker = TextChunker(model=req.model, id=base.id, created=base.created, usage=usage,
                                  index_base=i * req.n, echo_prefix=prompt if req.echo else "")
            current.generation = runner.submit(tokens, params, n=req.n)
            async for event in _events(current.generation, timer):
                for chunk in chunker.on_event(event):
                    yield chunk
        if req.stream and req.stream_options and req.stream_options.include_usage:
            yield {"id": base.id, "object": "text_completion", "created": base.created,
                   "model": req.model, "choices": [], "usage": usage.to_dict()}

    return await respond(request, chunks=chunks(), stream=req.stream,
                         close=_closer(request, entry, current, usage, req.keep_alive_seconds),
                         collect=lambda items: collect_text(items, usage, req.model, base.id,
                                                            base.created))
