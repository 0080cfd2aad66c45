"""OpenAI embeddings and Jina/Cohere reranking: the request bodies and the response bodies.

`EmbeddingsRequest` takes OpenAI's `input` forms (a string, strings, token ids, token-id lists)
and `RerankRequest` the shape llama.cpp's server and the RAG tools send (`documents` as strings or
`{text}` objects; `texts` too, as llama.cpp accepts it). `model_kind` reads what a model does
(chat, embeddings only, reranking) from its GGUF header, for the Model objects. Validation turns every wrong shape into
a 400 naming the field; `render_embeddings` and `render_rerank` build the bodies from the rows
the engine returns (`dimensions` truncates and re-normalises; base64 is little-endian float32).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from localgw.engine.types import ENCODER_ARCHITECTURES
from localgw.errors import LocalgwError
from localgw.gguf import read_gguf

MAX_INPUTS = 2048  # items in one embeddings request, and documents in one rerank request
RANK_POOLING = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK, as a GGUF stores it


def model_kind(path: str) -> tuple[bool, bool]:
    """(generates, reranks) of a GGUF file, from its header (cached by path and mtime); a file
    that cannot be read counts as a chat model."""
    try:
        metadata = read_gguf(path).metadata
    except (LocalgwError, OSError):
        return True, False
    arch = str(metadata.get("general.architecture", ""))
    return arch not in ENCODER_ARCHITECTURES, metadata.get(f"{arch}.pooling_type") == RANK_POOLING


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and all(type(t) is int for t in value)


class EmbeddingsRequest(_Body):
    model: str
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a string, an array of strings, an array of token ids, or an array of "
                    f"token-id arrays; at most {MAX_INPUTS} items")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise ValueError("input is an empty string; send some text")
            return value
        if not isinstance(value, list):
            raise ValueError("input must be a string, an array of strings, an array of token "
                             "ids or an array of token-id arrays")
        if not value:
            raise ValueError("input is an empty array; send at least one item")
        if len(value) > MAX_INPUTS:
            raise ValueError(f"input has {len(value)} items, over the limit of {MAX_INPUTS}")
        if all(isinstance(v, str) for v in value):
            empty = next((i for i, v in enumerate(value) if not v), None)
            if empty is not None:
                raise ValueError(f"input[{empty}] is an empty string; send some text")
            return value
        if _is_token_list(value) or all(_is_token_list(v) and v for v in value):
            return value
        raise ValueError("input must be a string, an array of strings, an array of token ids or "
                         "an array of non-empty token-id arrays (not a mix)")

    def items(self) -> list[str] | list[list[int]]:
        """The inputs, each a string or a list of token ids."""
        if isinstance(self.input, str):
            return [self.input]
        if self.input and type(self.input[0]) is int:
            return [list(self.input)]
        return list(self.input)


class RerankDocument(_Body):
    text: str


class RerankRequest(_Body):
    model: str
    query: str
    documents: list[str | RerankDocument] | None = None
    texts: list[str] | None = None  # llama.cpp's server accepts this name too
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False

    @model_validator(mode="after")
    def _documents(self) -> "RerankRequest":
        docs = self.documents if self.documents is not None else self.texts
        if not docs:
            raise ValueError("documents must be a non-empty array of strings or {text} objects")
        if len(docs) > MAX_INPUTS:
            raise ValueError(f"documents has {len(docs)} items, over the limit of {MAX_INPUTS}")
        return self

    def document_texts(self) -> list[str]:
        docs = self.documents if self.documents is not None else self.texts
        return [d if isinstance(d, str) else d.text for d in docs or []]


def model_does(path: str) -> list[str]:
    """What a GGUF serves: `chat` (a decoder), then `embeddings` (any model but a reranker) or
    `rerank`; for `localgw show`."""
    generates, reranks = model_kind(path)
    return (["chat"] if generates else []) + (["rerank"] if reranks else ["embeddings"])


# ---- responses ---------------------------------------------------------------------------------
def shape_vectors(rows: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Rows cut to `dimensions` and L2-normalised again (Matryoshka truncation); as they are
    without `dimensions` (the engine normalised them)."""
    if dimensions is None or dimensions >= rows.shape[1]:
        return rows
    cut = rows[:, :dimensions].astype(np.float64)
    norms = np.sqrt(np.sum(cut * cut, axis=1, keepdims=True))
    return (cut / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def encode_vector(row: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in row]


def render_embeddings(req: EmbeddingsRequest, rows: np.ndarray, prompt_tokens: int) -> dict:
    rows = shape_vectors(rows, req.dimensions)
    data = [{"object": "embedding", "index": i, "embedding": encode_vector(row, req.encoding_format)}
            for i, row in enumerate(rows)]
    return {"object": "list", "data": data, "model": req.model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def render_rerank(req: RerankRequest, scores: list[float], prompt_tokens: int) -> dict:
    """Results sorted by relevance, highest first (ties keep the documents' order), cut to top_n."""
    texts = req.document_texts()
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:req.top_n or len(scores)]
    results = []
    for i in order:
        item: dict = {"index": i, "relevance_score": float(scores[i])}
        if req.return_documents:
            item["document"] = {"text": texts[i]}
        results.append(item)
    return {"model": req.model, "object": "list", "results": results,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
