"""The Anthropic Messages API on the chat pipeline: body → ChatRequest; chat events → events.

The translation is lossless where the pipeline has the concept: `system` blocks become the system
message (all but Claude Code's per-request billing line, see BILLING_HEADER), `system` turns
inside `messages` system messages in place, `tool_use` blocks assistant tool calls, `tool_result`
blocks tool messages (an error result keeps its text: the model reads what went wrong),
`thinking` blocks the assistant's `reasoning_content`. `tool_choice` any/tool map to
required/named so the same grammar enforces them. `thinking` enabled or adaptive switches a
template's thinking on. Tools of a server-side type (web search and the like) cannot run here and
are left out. Fields with no local meaning (`output_config`, `context_management`, `metadata`,
`cache_control`, `service_tier`…) are accepted and ignored.
"""

from __future__ import annotations

import copy
import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from localgw.chat.events import ToolCallDelta, UsageCounts
from localgw.chat.requests import ChatRequest, ToolName, validate
from localgw.chat.responses import Usage, new_id
from localgw.errors import InvalidRequest, LocalgwError
from localgw.protocols.render import EventRenderer

Event = tuple[str, dict]   # (SSE event name, data)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)   # cache_control & co. are ignored


class TextBlock(_Body):
    type: Literal["text"]
    text: str


class ToolUseBlock(_Body):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Body):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock] | None = None
    is_error: bool = False

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n\n".join(block.text for block in self.content)
        return self.content or ""


class ThinkingBlock(_Body):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Body):
    type: Literal["redacted_thinking"]
    data: str = ""


BLOCKS = {"text": TextBlock, "tool_use": ToolUseBlock, "tool_result": ToolResultBlock,
          "thinking": ThinkingBlock, "redacted_thinking": RedactedThinkingBlock}


def _block_kind(value) -> str | None:
    """The block's model name (its union tag: error locations leave it out, as `_param` leaves out
    every union branch); None, an "unsupported block" 400, for any other type, an object too."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return BLOCKS[kind].__name__ if isinstance(kind, str) and kind in BLOCKS else None


Block = Annotated[Union[tuple(Annotated[cls, Tag(cls.__name__)] for cls in BLOCKS.values())],
                  Discriminator(_block_kind, custom_error_type="unsupported_block",
                                custom_error_message="unsupported content block type: this "
                                "server reads text, tool_use, tool_result and thinking blocks "
                                "(text only: no images or documents)")]


class Message(_Body):
    role: Literal["user", "assistant", "system"]  # Claude Code puts system turns in `messages`
    content: str | list[Block]

    def blocks(self) -> list:
        if isinstance(self.content, str):
            return [TextBlock(type="text", text=self.content)]
        return self.content


class Tool(_Body):
    name: ToolName
    description: str | None = None
    input_schema: dict | None = None
    type: str | None = None   # absent or "custom" for client tools; else a server tool

    @property
    def client_side(self) -> bool:
        return self.type in (None, "custom")


class ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False

    @model_validator(mode="after")
    def _named(self):
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs 'name'")
        return self


class Thinking(_Body):
    type: Literal["enabled", "adaptive", "disabled"]
    budget_tokens: int | None = None


class CountTokensRequest(_Body):
    """What decides the prompt: the body of `/v1/messages/count_tokens`."""

    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[Message], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None

    def chat_fields(self) -> dict:
        fields: dict[str, Any] = {"model": self.model,
                                  "messages": chat_messages(self.system, self.messages)}
        tools = [t for t in self.tools or [] if t.client_side]
        if tools:
            fields["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description,
                "parameters": t.input_schema or {"type": "object"}}} for t in tools]
        if self.tool_choice is not None:
            fields["tool_choice"] = _chat_tool_choice(self.tool_choice)
            fields["parallel_tool_calls"] = not self.tool_choice.disable_parallel_tool_use
        if self.thinking is not None:  # the switch templates that think read (Qwen3, SmolLM3…)
            fields["chat_template_kwargs"] = {"enable_thinking": self.thinking.type != "disabled"}
        return fields

    def to_chat(self) -> ChatRequest:
        fields = {k: v for k, v in self.chat_fields().items() if v is not None}
        return validate(ChatRequest, fields)


class MessagesRequest(CountTokensRequest):
    """The body of `/v1/messages`."""

    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: Annotated[list[str], Field(max_length=16)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    stream: bool = False
    metadata: dict | None = None

    def chat_fields(self) -> dict:
        return super().chat_fields() | {
            "max_tokens": self.max_tokens, "stop": self.stop_sequences,
            "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
            "stream": self.stream}


def _chat_tool_choice(choice: ToolChoice):
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


# Claude Code opens its system prompt with this line, whose `cch=` value changes on every
# request: left in, it would make every prompt differ from its first tokens on, so no prompt
# could reuse the cache (llama.cpp's server drops it the same way). It says nothing to the model.
BILLING_HEADER = "x-anthropic-billing-header:"


def system_text(system: str | list[TextBlock] | None) -> str | None:
    if isinstance(system, list):
        texts = [block.text for block in system if not block.text.startswith(BILLING_HEADER)]
        return "\n\n".join(texts) if texts else None
    return system


def chat_messages(system, messages: list[Message]) -> list[dict]:
    """Anthropic turns as chat messages: a user turn's tool results become tool messages, and a
    system turn inside `messages` stays where it is (the chat pipeline moves it to the front,
    or into the first user turn, for templates that want it there)."""
    out = []
    text = system_text(system)
    if text is not None:
        out.append({"role": "system", "content": text})
    for i, msg in enumerate(messages):
        turn = {"user": _user_turn, "assistant": _assistant_turn, "system": _system_turn}[msg.role]
        out += turn(msg.blocks(), f"messages[{i}]")
    return out


def _system_turn(blocks: list, where: str) -> list[dict]:
    for block in blocks:
        if not isinstance(block, TextBlock):
            raise _bad_block(block, where, "system")
    text = system_text(blocks)
    return [{"role": "system", "content": text}] if text is not None else []


def _user_turn(blocks: list, where: str) -> list[dict]:
    results, texts = [], []
    for block in blocks:
        if isinstance(block, ToolResultBlock):
            results.append({"role": "tool", "tool_call_id": block.tool_use_id,
                            "content": block.text()})
        elif isinstance(block, TextBlock):
            texts.append(block.text)
        else:
            raise _bad_block(block, where, "user")
    if texts or not results:
        results.append({"role": "user", "content": "\n\n".join(texts)})
    return results


def _assistant_turn(blocks: list, where: str) -> list[dict]:
    texts, calls, thinking = [], [], []
    for block in blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": block.input}})
        elif isinstance(block, ThinkingBlock):
            thinking.append(block.thinking)
        elif not isinstance(block, RedactedThinkingBlock):  # opaque: nothing to show the model
            raise _bad_block(block, where, "assistant")
    msg: dict[str, Any] = {"role": "assistant",
                           "content": "".join(texts) if texts or not calls else None}
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        msg["reasoning_content"] = "".join(thinking)
    return [msg]


def _bad_block(block, where: str, role: str) -> LocalgwError:
    return InvalidRequest(f"{where}: a {role} message cannot hold a '{block.type}' block",
                          param=f"{where}.content")


# ---- chat events → Anthropic events ------------------------------------------------------------

STOP_REASONS = {"tool_calls": "tool_use", "length": "max_tokens", "stop": "end_turn"}


def new_message_id() -> str:
    return new_id("msg", sep="_")


def tool_use_id(call_id: str) -> str:
    return "toolu_" + call_id.removeprefix("call_")


class MessageRenderer(EventRenderer):
    """Chat events in, Anthropic stream events out; `message` is the body they add up to.

    Non-streaming is "collect the stream": the route feeds every event and returns `message`.
    """

    REASONING = "thinking"
    TEXT = "text"

    def __init__(self, model: str, usage: Usage | UsageCounts | None = None,
                 id_: str | None = None):
        super().__init__(usage)
        self.message: dict[str, Any] = {
            "id": id_ or new_message_id(), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": self._usage()}
        self._open: int | None = None        # index of the content block being streamed
        self._json: dict[int, str] = {}      # tool_use block index → input JSON so far
        self._calls: dict[int, int] = {}     # the call's place in the choice → block index
        self.started = self.finished = False

    def _usage(self) -> dict:
        u = self.usage
        return {"input_tokens": u.prompt_tokens - u.cached_tokens,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": u.cached_tokens,
                "output_tokens": u.completion_tokens}

    def start(self) -> list[Event]:
        if self.started:
            return []
        self.started = True
        self.message["usage"] = self._usage()
        return [("message_start", {"type": "message_start",
                                   "message": copy.deepcopy(self.message)}),
                ("ping", {"type": "ping"})]

    def _start_block(self, block: dict) -> list[Event]:
        events = self._close_block()
        self.message["content"].append(block)
        self._open = len(self.message["content"]) - 1
        return events + [("content_block_start", {"type": "content_block_start",
                                                  "index": self._open,
                                                  "content_block": copy.deepcopy(block)})]

    def _close_block(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _delta(self, delta: dict) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": self._open,
                                        "delta": delta})

    def _append(self, kind: str, text: str) -> list[Event]:
        events = []
        block = self.message["content"][self._open] if self._open is not None else None
        if block is None or block["type"] != kind:
            empty = ({"type": "text", "text": ""} if kind == "text"
                     else {"type": "thinking", "thinking": "", "signature": ""})
            events += self._start_block(empty)
            block = self.message["content"][self._open]
        block[kind] += text
        return events + [self._delta({"type": f"{kind}_delta", kind: text})]

    def _tool_delta(self, call: ToolCallDelta) -> list[Event]:
        events = []
        if call.id:
            events += self._start_block({"type": "tool_use", "id": tool_use_id(call.id),
                                         "name": call.name or "", "input": {}})
            self._calls[call.call] = self._open
        arguments = call.arguments
        block = self._calls.get(call.call)
        if arguments and block is not None:
            self._json[block] = self._json.get(block, "") + arguments
            if block == self._open:  # parsers only extend the newest call; never a closed one
                events.append(self._delta({"type": "input_json_delta",
                                           "partial_json": arguments}))
        return events

    def _finish(self, finish_reason: str, stop_sequence: str | None) -> list[Event]:
        events = self._close_block()
        for index, text in self._json.items():
            try:
                self.message["content"][index]["input"] = json.loads(text or "{}")
            except ValueError:  # a call cut short (max_tokens, a stop sequence): no input
                pass
        reason = "stop_sequence" if stop_sequence is not None else STOP_REASONS.get(
            finish_reason, "end_turn")
        self.message.update(stop_reason=reason, stop_sequence=stop_sequence,
                            usage=self._usage())
        self.finished = True
        return events + [
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": reason, "stop_sequence": stop_sequence},
                               "usage": self._usage()}),
            ("message_stop", {"type": "message_stop"})]


# ---- errors ------------------------------------------------------------------------------------

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def error_body(exc: LocalgwError) -> dict:
    """Anthropic's error shape: `{"type":"error","error":{"type","message"}}`."""
    kind = ERROR_TYPES.get(exc.status, "invalid_request_error" if 400 <= exc.status < 500
                           else "api_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}

