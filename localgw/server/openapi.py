"""`GET /openapi.json`: an OpenAPI 3.1 description of every route, generated from the request models.

The request bodies are the pydantic models' own JSON schemas (what the server validates is what
the document says); responses are described loosely, errors by their shape (`error.message` and
`error.type`: OpenAI's, and Anthropic's on /v1/messages, which adds `"type": "error"`). A new
front door registers its request model in `REQUEST_BODIES` and a typical body in `EXAMPLES`; None
describes the body as an object.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse

from localgw.chat.requests import ChatRequest, CompletionRequest
from localgw.protocols.anthropic import CountTokensRequest, MessagesRequest
from localgw.protocols.embeddings import EmbeddingsRequest, RerankRequest
from localgw.protocols.responses import ResponsesRequest

# path → (summary, request model or None for "an object"); the POST routes of api.md.
REQUEST_BODIES: dict[str, tuple[str, type[BaseModel] | None]] = {
    "/v1/chat/completions": ("Chat completion (JSON, or Server-Sent Events with stream: true)",
                             ChatRequest),
    "/v1/completions": ("Text completion (legacy): a prompt string or array of strings",
                        CompletionRequest),
    "/v1/messages": ("Anthropic Messages API (JSON, or SSE with stream: true)", MessagesRequest),
    "/v1/messages/count_tokens": ("Anthropic token count with the model's tokenizer and template",
                                  CountTokensRequest),
    "/v1/responses": ("OpenAI Responses API (JSON, or SSE with stream: true)", ResponsesRequest),
    "/v1/embeddings": ("OpenAI embeddings: L2-normalised vectors of strings or token ids",
                       EmbeddingsRequest),
    "/v1/rerank": ("Rerank documents against a query with a reranker model (Jina/Cohere shape)",
                   RerankRequest),
    "/rerank": ("The same as /v1/rerank", RerankRequest),
}

# One typical body per POST route, shown in the document (and mutated by the fuzz test): each
# holds the route's kinds of turn, block or item, so it is worth reading and worth varying.
_WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
_MODEL = "Qwen/Qwen2.5-7B-Instruct"
EXAMPLES: dict[str, dict] = {
    "/v1/chat/completions": {
        "model": _MODEL, "max_tokens": 64, "temperature": 0.7, "stop": ["\n\n"],
        "messages": [
            {"role": "system", "content": "You are brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather", "parameters": _WEATHER}}],
        "tool_choice": "required"},
    "/v1/completions": {"model": _MODEL, "prompt": "Once upon a time", "max_tokens": 16,
                        "temperature": 0.8, "stop": ["."]},
    "/v1/messages/count_tokens": {
        "model": _MODEL, "system": "You are brief.",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Ask the tool.", "signature": ""},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21C"},
                {"type": "text", "text": "And tomorrow?"}]}],
        "tools": [{"name": "get_weather", "description": "Current weather",
                   "input_schema": _WEATHER}],
        "tool_choice": {"type": "any"}, "thinking": {"type": "disabled"}},
    "/v1/responses": {
        "model": _MODEL, "instructions": "You are brief.", "max_output_tokens": 64,
        "input": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\": \"Oslo\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21C"},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "And tomorrow?"}]}],
        "tools": [{"type": "function", "name": "get_weather", "description": "Current weather",
                   "parameters": _WEATHER}],
        "tool_choice": "required", "text": {"format": {"type": "text"}}, "store": False},
}
EXAMPLES["/v1/embeddings"] = {"model": "nomic-ai/nomic-embed-text-v1.5",
                              "input": ["search_query: what is a GGUF file?",
                                        "search_document: GGUF stores a model for llama.cpp."],
                              "encoding_format": "float", "dimensions": 256}
EXAMPLES["/v1/rerank"] = EXAMPLES["/rerank"] = {
    "model": "BAAI/bge-reranker-v2-m3", "query": "What is the capital of France?",
    "documents": ["Paris is the capital of France.", {"text": "Berlin is in Germany."}],
    "top_n": 1, "return_documents": True}
EXAMPLES["/v1/messages"] = {**EXAMPLES["/v1/messages/count_tokens"], "max_tokens": 64,
                            "temperature": 0.7, "stop_sequences": ["\n\n"]}

GET_ROUTES = {
    "/v1/models": "The models this server can serve: {object: list, data: [Model]}",
    "/v1/models/{model_id}": "One model (ids may contain '/')",
    "/health": "Readiness and the loaded models (public: no key needed)",
    "/metrics": "Prometheus metrics (text format)",
    "/openapi.json": "This document",
}

ERROR_STATUSES = {
    "400": "Invalid request: bad body or values, over a limit, prompt longer than the context",
    "401": "Missing or invalid API key",
    "404": "Unknown model or endpoint",
    "413": "Request body over the size limit",
    "429": "Too many queued requests (Retry-After)",
    "500": "Server error (a failed model load); the server stays up",
    "503": "Model still loading past the wait limit, or shutting down",
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]},
                       "code": {"type": ["string", "null"]}},
    }},
}


def _errors(statuses) -> dict:
    ref = {"$ref": "#/components/schemas/Error"}
    return {s: {"description": ERROR_STATUSES[s], "content": {"application/json": {"schema": ref}}}
            for s in statuses}


def _operation_id(path: str, method: str) -> str:
    cleaned = path.strip("/").replace("/", "_").replace("{", "").replace("}", "").replace(".", "_")
    return f"{method}_{cleaned}"


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    models = [m for _, m in REQUEST_BODIES.values() if m is not None]
    refs, top = models_json_schema([(m, "validation") for m in models],
                                   ref_template="#/components/schemas/{model}")
    schemas = dict(top.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, dict] = {}
    for path, (summary, model) in REQUEST_BODIES.items():
        body = refs[(model, "validation")] if model is not None else {"type": "object"}
        paths[path] = {"post": {
            "operationId": _operation_id(path, "post"),
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": body, "examples": {"typical": {"value": EXAMPLES[path]}}}}},
            "responses": {
                "200": {"description": "The result; `text/event-stream` when streaming",
                        "content": {"application/json": {"schema": {"type": "object"}},
                                    "text/event-stream": {"schema": {"type": "string"}}}},
                **_errors(["400", "401", "404", "413", "429", "500", "503"]),
            },
        }}
    for path, summary in GET_ROUTES.items():
        content = ({"text/plain": {"schema": {"type": "string"}}} if path == "/metrics"
                   else {"application/json": {"schema": {"type": "object"}}})
        op = {"operationId": _operation_id(path, "get"), "summary": summary,
              "responses": {"200": {"description": "OK", "content": content},
                            **_errors(["401"] if path != "/health" else [])}}
        if path == "/v1/models/{model_id}":
            op["parameters"] = [{"name": "model_id", "in": "path", "required": True,
                                 "schema": {"type": "string"}}]
            op["responses"].update(_errors(["404"]))
        if path == "/health":
            op["security"] = []
            op["responses"]["503"] = {"description": "Shutting down",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}
        paths[path] = {"get": op}
    return {
        "openapi": "3.1.0",
        "info": {"title": "localgw", "version": _version(),
                 "description": "A local, OpenAI-compatible inference server for GGUF models."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
        # A key is needed only when the server was started with one.
        "security": [{"bearer": []}, {"apiKey": []}, {}],
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("localgw")
    except PackageNotFoundError:
        return "0"


async def openapi_route(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())
