"""Routes for the other wire formats: translate at the door, run `start_chat`, render the events.

Each route is the same four steps: parse the format's body, translate it into a ChatRequest, start
the one chat pipeline, and render its typed events (`chat.events`) as the format's stream or
collected body.
"""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from localgw.protocols import anthropic, responses
from localgw.protocols.response_events import ResponseRenderer
from localgw.server.routes import count_prompt, parse_request, respond, start_chat
from localgw.server.streaming import EventStreamResponse, named_event


def _event_stream(error_event):
    """An SSE response of named events, with no `[DONE]`: these formats end with their own event."""
    return partial(EventStreamResponse, encode=named_event,
                   encode_error=lambda exc: named_event(error_event(exc)), done=None)


async def messages(request: Request) -> Response:
    req: anthropic.MessagesRequest = await parse_request(request, anthropic.MessagesRequest)
    call = await start_chat(request, req.to_chat())
    renderer = anthropic.MessageRenderer(req.model)
    return await respond(request, chunks=renderer.render(call.events),
                         close=call.close, stream=req.stream,
                         collect=lambda _events: renderer.message,
                         stream_response=_event_stream(
                             lambda exc: ("error", anthropic.error_body(exc))))


async def count_tokens(request: Request) -> JSONResponse:
    """The exact prompt length of a Messages request: the model's own template and tokenizer."""
    req: anthropic.CountTokensRequest = await parse_request(request, anthropic.CountTokensRequest)
    _, tokens = await count_prompt(request, req.to_chat())
    return JSONResponse({"input_tokens": len(tokens)})


async def create_response(request: Request) -> Response:
    req: responses.ResponsesRequest = await parse_request(request, responses.ResponsesRequest)
    store: responses.ResponseStore = request.app.state.responses
    history = store.history(req.previous_response_id)
    items = history + req.input_items()
    call = await start_chat(request, req.to_chat(items))
    renderer = ResponseRenderer(req, on_done=lambda r: store.save(r, items, req.store))
    return await respond(request, chunks=renderer.render(call.events),
                         close=call.close, stream=req.stream,
                         collect=lambda _events: renderer.response,
                         stream_response=_event_stream(renderer.error_event))
