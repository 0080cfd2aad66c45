"""Routes for the other wire formats: translate at the door, run `start_chat`, render the chunks.

Each route is the same four steps: parse the format's body, translate it into a ChatRequest, start
the one chat pipeline, and render its chunks as the format's stream or collected body.
"""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from localgw.chat.prompt import check_conversation, check_tool_choice
from localgw.chat.requests import parse_body
from localgw.protocols import anthropic, responses
from localgw.server.routes import _json_body, prepare_prompt, respond, start_chat
from localgw.server.streaming import EventStreamResponse, named_event


def _event_stream(error_event):
    """An SSE response of named events, with no `[DONE]`: these formats end with their own event."""
    return partial(EventStreamResponse, encode=named_event,
                   encode_error=lambda exc: named_event(error_event(exc)), done=None)


async def messages(request: Request) -> Response:
    req: anthropic.MessagesRequest = parse_body(anthropic.MessagesRequest,
                                                await _json_body(request))
    call = await start_chat(request, req.to_chat())
    renderer = anthropic.MessageRenderer(req.model, call.usage)
    return await respond(request, chunks=anthropic.render_events(call.chunks, renderer),
                         close=call.close, stream=req.stream,
                         collect=lambda _events: renderer.message,
                         stream_response=_event_stream(
                             lambda exc: ("error", anthropic.error_body(exc))))


async def count_tokens(request: Request) -> JSONResponse:
    """The exact prompt length of a Messages request: the model's own template and tokenizer."""
    req: anthropic.CountTokensRequest = parse_body(anthropic.CountTokensRequest,
                                                   await _json_body(request))
    chat = req.to_chat()
    check_conversation(chat.messages)
    check_tool_choice(chat)
    manager = request.app.state.manager
    entry = await manager.acquire(chat.model)
    try:
        _, tokens = prepare_prompt(entry.runner, chat, request.app.state.settings)
    finally:
        await manager.release(entry)
    return JSONResponse({"input_tokens": len(tokens)})


async def create_response(request: Request) -> Response:
    req: responses.ResponsesRequest = parse_body(responses.ResponsesRequest,
                                                 await _json_body(request))
    store: responses.ResponseStore = request.app.state.responses
    history = store.history(req.previous_response_id)
    items = history + req.input_items()
    call = await start_chat(request, req.to_chat(items))
    renderer = responses.ResponseRenderer(req, call.usage,
                                          on_done=lambda r: store.save(r, items, req.store))
    return await respond(request, chunks=responses.render_events(call.chunks, renderer),
                         close=call.close, stream=req.stream,
                         collect=lambda _events: renderer.response,
                         stream_response=_event_stream(renderer.error_event))
