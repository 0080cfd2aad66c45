"""The chat app's only link to a server: the OpenAI HTTP API, over httpx.

`stream_chat` yields deltas as they arrive; cancelling the task that iterates it closes the
connection, and the server stops generating.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

import httpx


@dataclass
class Delta:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict] = field(default_factory=list)  # OpenAI tool-call deltas


@dataclass
class Finished:
    finish_reason: str | None
    usage: dict | None = None


class ClientError(Exception):
    """Anything that went wrong talking to the server, said the way a person can act on.

    `status`: the HTTP status, None when no answer came; `code`: the OpenAI error code, when the
    server gave one (e.g. "model_not_found")."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def model_not_found(self, model: str | None) -> bool:
        """The server does not have `model` (localgw and OpenAI say so by code; others in words)."""
        if self.code == "model_not_found":
            return True
        return self.status == 404 and bool(model) and model in self.message

    def __str__(self) -> str:
        return self.message if self.status is None else f"{self.status}: {self.message}"


@dataclass
class ModelInfo:
    id: str
    context_length: int | None = None
    quantization: str | None = None
    size: int | None = None
    features: list[str] = field(default_factory=list)
    loaded: bool = False
    default_sampling: dict = field(default_factory=dict)  # what the server uses for fields left out
    upstream: str | None = None  # the engine that serves it, when not this server

    def defaults_label(self) -> str:
        """e.g. "temperature 0.7 · top_p 0.8 · top_k 20", or "" when the server does not say."""
        return " · ".join(f"{k} {v}" for k, v in self.default_sampling.items() if v is not None)

    def label(self) -> str:
        parts = [self.id]
        if self.quantization:
            parts.append(self.quantization)
        if self.size:
            parts.append(f"{self.size / 1e9:.1f} GB" if self.size > 1e9 else f"{self.size / 1e6:.0f} MB")
        if self.context_length:
            parts.append(f"ctx {self.context_length}")
        shown = [f for f in self.features if f in ("tools", "reasoning", "structured_outputs")]
        if shown:
            parts.append(", ".join(shown))
        if self.loaded:
            parts.append("loaded")
        return " · ".join(parts)


class ChatClient(Protocol):
    url: str

    async def list_models(self) -> list[ModelInfo]: ...

    async def health(self) -> dict: ...

    def stream_chat(self, model: str, messages: list[dict], *, temperature: float | None,
                    max_tokens: int | None) -> AsyncIterator[Delta | Finished]: ...


def base_url(url: str) -> str:
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def _error(response: httpx.Response) -> ClientError:
    """The server's own message and code when it sent an OpenAI error body, else its text."""
    try:
        error = response.json()["error"]
        message, code = error["message"], error.get("code")
        if not isinstance(message, str):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = response.text[:200] or response.reason_phrase, None
    return ClientError(message, response.status_code, code if isinstance(code, str) else None)


class HttpChatClient:
    """`extra_body`: fields added to every chat request (e.g. a benchmark's logit_bias). Sampling
    fields the user did not set are never sent: the server then uses the model's own defaults."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 600,
                 extra_body: dict | None = None):
        self.url = base_url(url)
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers,
                                       timeout=httpx.Timeout(timeout, connect=5))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str) -> dict:
        try:
            response = await self._http.get(path)
        except httpx.HTTPError as exc:
            raise ClientError(f"no server answers at {self.url} ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    async def health(self) -> dict:
        return await self._get("/health")

    async def list_models(self) -> list[ModelInfo]:
        data = await self._get("/v1/models")
        return [ModelInfo(m["id"], m.get("context_length"), m.get("quantization"), m.get("size"),
                          m.get("supported_features") or [], bool(m.get("loaded")),
                          m.get("default_sampling") or {}, m.get("upstream"))
                for m in data.get("data", [])]

    async def stream_chat(self, model: str, messages: list[dict], *, temperature: float | None,
                          max_tokens: int | None) -> AsyncIterator[Delta | Finished]:
        body = {**self.extra_body, "model": model, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens:
            body["max_tokens"] = max_tokens
        finish, usage = None, None
        try:
            async with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        error = chunk["error"] if isinstance(chunk["error"], dict) else {}
                        code = error.get("code")
                        raise ClientError(error.get("message") or "the server failed",
                                          code=code if isinstance(code, str) else None)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices", []):
                        delta = choice.get("delta") or {}
                        finish = choice.get("finish_reason") or finish
                        out = Delta(delta.get("content") or "",
                                    delta.get("reasoning_content") or delta.get("reasoning") or "",
                                    delta.get("tool_calls") or [])
                        if out.content or out.reasoning or out.tool_calls:
                            yield out
        except httpx.HTTPError as exc:
            raise ClientError(f"no server answers at {self.url} ({type(exc).__name__})") from None
        yield Finished(finish, usage)
