"""OpenAI request bodies, validated with pydantic (strict: no silent type coercion).

A validation failure becomes a 400 naming the offending `param`; unknown fields are ignored.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from localgw.errors import InvalidRequest


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


def _text_part_schema(schema: dict) -> None:
    """What a part must be to pass `_text_only`, for /openapi.json (the model reads any type, to
    name it in the error)."""
    schema["properties"].update(type={"const": "text", "type": "string"}, text={"type": "string"})
    schema["required"] = ["type", "text"]


class TextPart(_Body):
    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra=_text_part_schema)

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self):
        if self.type != "text":
            raise ValueError(f"content part type {self.type!r} is not supported: this server "
                             "accepts text only")
        if self.text is None:
            raise ValueError("a text content part needs 'text'")
        return self


class FunctionCall(_Body):
    name: str
    arguments: str | dict = "{}"


class ToolCall(_Body):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None

    def text(self) -> str | None:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content)
        return self.content


# what a function (tool) name may be, in every wire format
ToolName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class FunctionDef(_Body):
    name: ToolName
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(_Body):
    name: str = "response"
    description: str | None = None
    schema_: dict | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self):
        if self.type == "json_schema" and (self.json_schema is None
                                           or self.json_schema.schema_ is None):
            raise ValueError("response_format of type json_schema needs json_schema.schema")
        return self


class StreamOptions(_Body):
    include_usage: bool = False


TOKEN_ID = r"^-?[0-9]{1,12}$"
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class SamplingFields(_Body):
    """Fields shared by chat and text completions."""

    model: Annotated[str, Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Probability | None = None
    top_k: Annotated[int, Field(ge=-1)] | None = None
    min_p: Probability | None = None
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0)] | None = None
    repeat_penalty: Annotated[float, Field(gt=0.0)] | None = None
    logit_bias: Annotated[dict[str, Annotated[float, Field(ge=-100, le=100)]] | None,
                          Field(json_schema_extra={"propertyNames": {"pattern": TOKEN_ID}})] = None
    n: Annotated[int, Field(ge=1, le=8)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    keep_alive: str | int | float | None = None  # extra (Ollama-style): how long to stay loaded

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, value):
        if value is None:
            return None
        from localgw.durations import parse_duration
        parse_duration(value)  # raises ValueError → a 400 naming keep_alive
        return value

    @property
    def keep_alive_seconds(self):
        """Seconds, None for forever, or "default" when the request did not say."""
        from localgw.durations import parse_duration
        return "default" if self.keep_alive is None else parse_duration(self.keep_alive)

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value):
        for key in value or {}:
            if not re.fullmatch(TOKEN_ID, key):  # ASCII digits: str.isdigit() takes '²' too
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
        return value

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatRequest(SamplingFields):
    messages: Annotated[list[Message], Field(min_length=1)]
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self


class CompletionRequest(SamplingFields):
    prompt: str | Annotated[list[str], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = 16  # OpenAI's default for this endpoint
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool = False

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


def _param(loc: tuple) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[str]", "list[TextPart]", "function-after[_text_only(), TextPart]"):
            continue  # union branch names are noise to a user
        elif "[" in str(part) or str(part).startswith(("function-", "constrained-", "literal[")):
            continue
        elif str(part)[:1].isupper():  # a union branch named by its model (fields are lower case)
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or None


class BodyLimits(Protocol):
    """What parse_body checks on the raw JSON before validation (server.limits.Limits)."""

    def check_depth(self, data: Any) -> None: ...
    def check_raw(self, data: Any) -> None: ...
    def too_deep(self, depth: int | str) -> Exception: ...


def _useful_error(errors: list[dict]) -> dict:
    """A union reports one error per branch: the deepest one, and one that is not merely the
    wrong type for a branch the user did not mean, is the useful one (a 1,000-entry `stop` list
    is "too long", not "not a string")."""
    def key(e):
        depth = len([p for p in e["loc"] if isinstance(p, int)
                     or not str(p).startswith(("str", "list["))])
        return depth, not e["type"].endswith("_type")
    return max(errors, key=key)


def parse_body(model: type[_Body], body: bytes, limits: BodyLimits | None = None) -> Any:
    """Validate a JSON body; any problem is an InvalidRequest a person can act on.

    With `limits`, the parsed JSON's depth and list lengths are checked before pydantic validates
    it (validation of an absurd body is the expensive part); a body nested past what the JSON
    parser itself can follow is refused the same way, never a RecursionError.
    """
    if not body.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        data = json.loads(body)
    except RecursionError:
        if limits is not None:
            raise limits.too_deep(f"more than {sys.getrecursionlimit()}") from None
        raise InvalidRequest("the request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if limits is not None:
        limits.check_raw(data)  # list lengths first: cheaper than walking the whole body
        limits.check_depth(data)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def validate(model: type[_Body], data: dict) -> Any:
    """Validate a request built in Python (a door's translation into a `ChatRequest`), with the
    errors `parse_body` gives for the same JSON."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """The InvalidRequest a person can act on, for pydantic's most useful error."""
    err = _useful_error(exc.errors(include_url=False))
    param = _param(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return InvalidRequest(f"missing required parameter '{param}'", param=param)
    if err["type"] == "model_type" and not err["loc"]:
        return InvalidRequest("the request body must be a JSON object")
    if err["type"] == "json_invalid":  # e.g. a lone surrogate escape, which json.loads allows
        return InvalidRequest(f"the request body is not valid JSON: {msg}")
    where = f"'{param}'" if param else "the request"
    if err["type"] == "too_long" and "max_length" in (err.get("ctx") or {}):
        ctx = err["ctx"]
        return InvalidRequest(f"{where} has {ctx.get('actual_length', 'too many')} items, over "
                              f"the limit of {ctx['max_length']}", param=param)
    got = err.get("input")
    shown = ""
    if got is not None and not isinstance(got, (dict, list, bytes)):
        shown = f" (got {json.dumps(got, default=repr)[:80]})"
    return InvalidRequest(f"invalid value for {where}: {msg}{shown}", param=param)
