"""`/v1/embeddings` and `/v1/rerank` (also `/rerank`): parse, run on the model, render.

A model that an upstream serves (and no local model of that id) is not run here: the body goes
to the upstream's `embeddings` or `rerank` as the client sent it (`server.forwarding`, as for
chat), and its answer, or its error mapped as chat's are, comes back.

`EmbedService` (no HTTP types) does the work between: it takes the model from the manager
(loading it if needed), checks what the request asks of it (a reranker for /v1/rerank, not for
embeddings; `dimensions` within the vector's size), tokenizes the inputs in the preparation
pool (a cheap character bound first, as for chat prompts), queues them on the model's loop
(`Runner.embed`, which checks every input's length and ids) and waits for the rows. The client
leaving ends the wait at once and cancels the job; the model is released either way.
"""

from __future__ import annotations

import threading
from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from localgw.engine.types import Embedded, EmbeddingInfo, JobFailed
from localgw.errors import ContextLengthExceeded, InvalidRequest, LocalgwError, ServiceUnavailable
from localgw.protocols.embeddings import (EmbeddingsRequest, RerankRequest, render_embeddings,
                                          render_rerank)
from localgw.server.cancel import Cancellation, Disconnect, run_until_cancelled
from localgw.server.forwarding import upstream_answer
from localgw.server.limits import check_stop, longest_token_chars
from localgw.server.routes import parse_request

SMALL_INPUT_CHARS = 4096  # inputs with no more text than this are tokenized on the event loop


class EmbedService:
    """Embeddings and rerank scores from local models (see the module's docstring)."""

    def __init__(self, manager, pool):
        self.manager, self.pool = manager, pool

    async def embed(self, req: EmbeddingsRequest, cancel: Cancellation) -> Embedded:
        items = req.items()

        def check(runner) -> None:
            info: EmbeddingInfo = runner.embedding
            if info.reranks:
                raise InvalidRequest(f"{req.model} is a reranker: its outputs are relevance "
                                     "scores, not embeddings; use it with /v1/rerank",
                                     param="model")
            if req.dimensions is not None and req.dimensions > info.dimensions:
                raise InvalidRequest(f"dimensions is {req.dimensions}, but {req.model}'s vectors "
                                     f"have {info.dimensions}; ask for at most that",
                                     param="dimensions")

        def tokenize(runner, stop: threading.Event) -> list[list[int]]:
            if isinstance(items[0], list):
                return items
            return _tokenize_all(runner, items, runner.embedding_tokens, stop)

        small = isinstance(items[0], list) or sum(map(len, items)) <= SMALL_INPUT_CHARS
        return await self._run(req.model, cancel, check, tokenize, small)

    async def rerank(self, req: RerankRequest, cancel: Cancellation) -> tuple[list[float], int]:
        docs = req.document_texts()

        def check(runner) -> None:
            info: EmbeddingInfo = runner.embedding
            if not info.reranks:
                raise InvalidRequest(
                    f"{req.model} is not a reranker: /v1/rerank needs a reranker GGUF (a "
                    "classification head with rank pooling, e.g. BAAI/bge-reranker-v2-m3); this "
                    f"model pools by {info.pooling} for embeddings", param="model")

        def tokenize(runner, stop: threading.Event) -> list[list[int]]:
            return _tokenize_all(runner, docs, lambda d: runner.rerank_tokens(req.query, d), stop,
                                 param="documents", extra_chars=len(req.query))

        small = sum(map(len, docs)) + len(req.query) * len(docs) <= SMALL_INPUT_CHARS
        done = await self._run(req.model, cancel, check, tokenize, small)
        return [float(row[0]) for row in done.rows], done.prompt_tokens

    async def _run(self, model_id: str, cancel: Cancellation, check, tokenize,
                   small: bool) -> Embedded:
        held: dict = {}

        async def work() -> Embedded:
            held["entry"] = entry = await self.manager.acquire(model_id)
            runner = entry.runner
            check(runner)
            inputs = await self.pool.run(tokenize, runner, inline=small)
            held["job"] = runner.embed(inputs)
            return await _result(held["job"])

        try:
            return await run_until_cancelled(cancel, work)
        finally:
            if "job" in held:
                held["job"].cancel()
            if "entry" in held:
                await self.manager.release(held["entry"])


def _tokenize_all(runner, texts: list[str], tokenize: Callable[[str], list[int]],
                  stop: threading.Event, param: str = "input",
                  extra_chars: int = 0) -> list[list[int]]:
    """Each text's tokens; one that surely exceeds the model's limit is refused untokenized."""
    out = []
    for i, text in enumerate(texts):
        check_stop(stop)
        where = f"{param}[{i}]" if len(texts) > 1 else param
        _check_chars(runner, text, extra_chars, where, param)
        out.append(tokenize(text))
    return out


def _check_chars(runner, text: str, extra_chars: int, where: str, param: str) -> None:
    """Refuse untokenized a text that cannot fit: no token is longer than the vocabulary's
    longest, so its characters give a lower bound on its tokens."""
    limit, longest = runner.embedding.max_tokens, longest_token_chars(runner)
    if not longest:
        return
    chars = len(text) + extra_chars
    at_least = -(-chars // longest)
    if at_least > limit:
        raise ContextLengthExceeded(
            f"{where} has {chars} characters, which is at least {at_least} tokens, over this "
            f"model's limit of {limit} tokens for one input; shorten or split it", param=param)


async def _result(job) -> Embedded:
    result = None
    async for event in job:
        if isinstance(event, JobFailed):
            err = event.error
            raise err if isinstance(err, LocalgwError) else LocalgwError(f"embedding failed: {err}")
        if isinstance(event, Embedded):
            result = event
    if result is None:
        raise ServiceUnavailable("the model stopped before the embeddings were done; retry")
    return result


# ---- routes ------------------------------------------------------------------------------------
def _service(request: Request) -> EmbedService:
    return request.app.state.embed_service


# not a field of these bodies: the answer is one JSON body, never SSE
_NOT_FORWARDED = ("stream",)


async def embeddings(request: Request) -> Response:
    body, _, answer = await upstream_answer(request, "embeddings", _NOT_FORWARDED)
    if answer is not None:
        return answer
    req: EmbeddingsRequest = await parse_request(request, EmbeddingsRequest, body)
    done = await _service(request).embed(req, Disconnect(request.receive))
    return JSONResponse(render_embeddings(req, done.rows, done.prompt_tokens))


async def rerank(request: Request) -> Response:
    body, _, answer = await upstream_answer(request, "rerank", _NOT_FORWARDED)
    if answer is not None:
        return answer
    req: RerankRequest = await parse_request(request, RerankRequest, body)
    scores, tokens = await _service(request).rerank(req, Disconnect(request.receive))
    return JSONResponse(render_rerank(req, scores, tokens))
