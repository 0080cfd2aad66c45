"""Route handlers for the OpenAI doors and the server's own: parse, call the service, render.

The work between parsing and rendering is `server.service.ChatService`'s (no HTTP types there);
here each request's cancellation signal is its client's disconnect.
"""

from __future__ import annotations

import threading
import time
from typing import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from localgw.chat.formats import chat_format
from localgw.chat.pipeline import PreparedChat
from localgw.chat.requests import ChatRequest, CompletionRequest, parse_body
from localgw.chat.responses import collect_chat, collect_text
from localgw.protocols.embeddings import model_kind
from localgw.server.calls import ChatCall
from localgw.server.cancel import ClientGone, Disconnect
from localgw.server.forwarding import upstream_answer
from localgw.server.limits import SMALL_BODY
from localgw.server.router import Where
from localgw.server.service import ChatService
from localgw.server.streaming import EventStreamResponse, run_until_disconnect

SAMPLING_PARAMETERS = ["temperature", "top_p", "top_k", "min_p", "stop", "seed",
                       "frequency_penalty", "presence_penalty", "repetition_penalty",
                       "logit_bias", "logprobs", "top_logprobs", "n", "max_tokens"]


def supported_features(manifest, template_override: str | None = None) -> list[str]:
    """What the model's template supports, plus what every model gets from the grammar; and
    embeddings (any model but a reranker) or rerank (a reranker GGUF). An encoder-only model
    does embeddings (or reranking) alone."""
    generates, reranks = model_kind(manifest.path)
    embedding = ["rerank"] if reranks else ["embeddings"]
    if not generates:
        return embedding
    features = []
    if template_override is not None:
        fmt = chat_format(template_override)
        tools, reasoning = fmt.native_tools, fmt.reasoning is not None
    else:
        tools, reasoning = manifest.supports_tools, manifest.supports_reasoning
    features += ["tools"] if tools else []
    features += ["json_mode", "structured_outputs"]
    features += ["reasoning"] if reasoning else []
    return features + ["logprobs"] + embedding


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
        "input_modalities": ["text"],
        "output_modalities": ["text"] if "logprobs" in features else ["embeddings"],
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
    data += _service(request).router.models({m.id for m in manifests})
    return JSONResponse({"object": "list", "data": data})


async def get_model(request: Request) -> JSONResponse:
    manager = request.app.state.manager
    model_id = request.path_params["model_id"]
    if (upstream := await _service(request).router.model(model_id)) is not None:
        return JSONResponse(upstream)
    manifest = manager.manifest(model_id)
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


def _service(request: Request) -> ChatService:
    return request.app.state.service


def _cancel(request: Request) -> Disconnect:
    return Disconnect(request.receive)


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def _parse_in_thread(model, body: bytes, limits, stop: threading.Event):
    return parse_body(model, body, limits)


async def parse_request(request: Request, model: type, body: bytes | None = None):
    """Validate the JSON body: a big one off the event loop, dropped if the client leaves."""
    if body is None:
        body = await request.body()  # a JSON body: middleware.BrowserGuard saw its Content-Type
    limits = request.app.state.settings.limits
    if len(body) < SMALL_BODY:
        return parse_body(model, body, limits)
    return await run_until_disconnect(
        request.receive,
        lambda: request.app.state.prepare_pool.run(_parse_in_thread, model, body, limits))


async def start_chat(request: Request, req: ChatRequest, where: Where | None = None) -> ChatCall:
    """`ChatService.start` for this HTTP request: it ends if the client leaves."""
    return await _service(request).start(req, _cancel(request), where,
                                         request_id=_request_id(request))


async def count_prompt(request: Request, req: ChatRequest) -> tuple[PreparedChat, list[int]]:
    """`ChatService.count` for this HTTP request: it ends if the client leaves."""
    return await _service(request).count(req, _cancel(request))


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


async def chat_completions(request: Request) -> Response:
    body, where, answer = await upstream_answer(request, "chat/completions")
    if answer is not None:
        return answer
    req: ChatRequest = await parse_request(request, ChatRequest, body)
    call = await start_chat(request, req, where)
    return await respond(request, chunks=call.chunks, close=call.close, stream=req.stream,
                         collect=lambda items: collect_chat(items, call.usage)
                         | ({"id": call.id, "created": call.created, "model": call.model}))


async def completions(request: Request) -> Response:
    body, _, answer = await upstream_answer(request, "completions")
    if answer is not None:
        return answer
    req: CompletionRequest = await parse_request(request, CompletionRequest, body)
    call = await _service(request).complete(req, _cancel(request))
    return await respond(request, chunks=call.chunks, close=call.close, stream=req.stream,
                         collect=lambda items: collect_text(items, call.usage, req.model, call.id,
                                                            call.created))
