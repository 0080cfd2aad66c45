"""The OpenAI Responses API on the chat pipeline: body → ChatRequest; chat chunks → events.

Input items map onto chat messages: `message` items by role, `function_call` items onto the
assistant turn they follow (parallel calls are one turn), `function_call_output` items onto tool
messages, `reasoning` items onto the next assistant turn's `reasoning_content`. Responses are kept
in memory (a bounded LRU) as the item list they add up to, so `previous_response_id` is
"those items, then these" (as in OpenAI's API, the earlier `instructions` are not carried over).
Built-in tools of other types (web search and the like) cannot run
here and are left out.
"""

from __future__ import annotations

import copy
import json
import time
from collections import OrderedDict
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from localgw.chat.requests import ChatRequest, ToolName, parse_body
from localgw.chat.responses import Usage, new_id
from localgw.errors import InvalidRequest, LocalgwError
from localgw.protocols.chunks import ChunkRenderer

Event = tuple[str, dict]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Body):
    type: Literal["input_text", "output_text", "text"]
    text: str


def _join(content: str | list[TextPart], sep: str) -> str:
    return content if isinstance(content, str) else sep.join(p.text for p in content)


class MessageItem(_Body):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[TextPart]


class FunctionCallItem(_Body):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(_Body):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[TextPart]


class ReasoningText(_Body):
    type: Literal["reasoning_text", "summary_text"]
    text: str


class ReasoningItem(_Body):
    type: Literal["reasoning"]
    summary: list[ReasoningText] = []
    content: list[ReasoningText] | None = None

    def text(self) -> str:
        return "".join(p.text for p in (self.content or self.summary))


ITEM_TYPES = {"message": MessageItem, "function_call": FunctionCallItem,
              "function_call_output": FunctionCallOutputItem, "reasoning": ReasoningItem}


def _item_kind(value) -> str | None:
    """The item's model name (its union tag), `message` when absent; None, an "unsupported item"
    400, for any other type."""
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", None)
    return ITEM_TYPES[kind].__name__ if isinstance(kind, str) and kind in ITEM_TYPES else None


Item = Annotated[Union[tuple(Annotated[cls, Tag(cls.__name__)] for cls in ITEM_TYPES.values())],
                 Discriminator(_item_kind, custom_error_type="invalid_item",
                               custom_error_message="unsupported input item type: this server "
                               "takes message, function_call, function_call_output and reasoning")]
ITEMS = TypeAdapter(list[Item])


class FunctionTool(_Body):
    type: str
    name: ToolName | None = None
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class NamedTool(_Body):
    type: Literal["function"]
    name: str


class Format(_Body):
    type: Literal["text", "json_object", "json_schema"]
    name: str = "response"
    schema_: dict | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class TextConfig(_Body):
    format: Format | None = None


class Reasoning(_Body):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(_Body):
    model: Annotated[str, Field(min_length=1)]
    input: str | list[Item]
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    seed: int | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = None
    parallel_tool_calls: bool = True
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict | None = None

    def input_items(self) -> list:
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def function_tools(self) -> list[FunctionTool]:
        tools = [t for t in self.tools or [] if t.type == "function"]
        for i, tool in enumerate(tools):
            if not tool.name:
                raise InvalidRequest("a function tool needs 'name'", param=f"tools[{i}].name")
        return tools

    def to_chat(self, items: list) -> ChatRequest:
        """The chat request for this request's instructions and settings over `items`."""
        if not items and not self.instructions:
            raise InvalidRequest("'input' is empty: send a string or at least one item",
                                 param="input")
        fields: dict[str, Any] = {
            "model": self.model, "messages": chat_messages(self.instructions, items),
            "max_tokens": self.max_output_tokens, "temperature": self.temperature,
            "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed, "stream": self.stream,
            "parallel_tool_calls": self.parallel_tool_calls}
        tools = self.function_tools()
        if tools:
            fields["tools"] = [{"type": "function", "function": t.model_dump(
                exclude_none=True, exclude={"type"})} for t in tools]
        if isinstance(self.tool_choice, NamedTool):
            fields["tool_choice"] = {"type": "function",
                                     "function": {"name": self.tool_choice.name}}
        else:
            fields["tool_choice"] = self.tool_choice
        fmt = self.text.format if self.text else None
        if fmt is not None and fmt.type == "json_schema":
            fields["response_format"] = {"type": "json_schema", "json_schema": {
                "name": fmt.name, "schema": fmt.schema_ or {}, "strict": fmt.strict}}
        elif fmt is not None:
            fields["response_format"] = {"type": fmt.type}
        if self.reasoning and self.reasoning.effort:  # the switch templates that think read
            fields["chat_template_kwargs"] = {"enable_thinking": self.reasoning.effort != "none"}
        fields = {k: v for k, v in fields.items() if v is not None}
        return parse_body(ChatRequest, json.dumps(fields).encode())


def chat_messages(instructions: str | None, items: list) -> list[dict]:
    """Items as chat messages: calls join the assistant turn they follow, outputs become tools."""
    out: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
    reasoning = ""

    def assistant(content: str | None) -> dict:
        nonlocal reasoning
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning:
            msg["reasoning_content"], reasoning = reasoning, ""
        out.append(msg)
        return msg

    for item in items:
        if isinstance(item, ReasoningItem):
            reasoning += item.text()
        elif isinstance(item, MessageItem) and item.role == "assistant":
            assistant(_join(item.content, ""))
        elif isinstance(item, MessageItem):
            out.append({"role": item.role, "content": _join(item.content, "\n\n")})
        elif isinstance(item, FunctionCallItem):
            last = out[-1] if out and out[-1]["role"] == "assistant" and not reasoning else None
            msg = last or assistant(None)
            msg.setdefault("tool_calls", []).append({
                "id": item.call_id, "type": "function",
                "function": {"name": item.name, "arguments": item.arguments}})
        else:
            out.append({"role": "tool", "tool_call_id": item.call_id,
                        "content": _join(item.output, "\n\n")})
    return out


# ---- stored responses --------------------------------------------------------------------------

class ResponseStore:
    """Finished responses as the item lists they add up to, newest kept (LRU by use), bounded
    in count and in bytes (each entry weighed as its items' JSON). A response larger than the
    whole byte budget is not kept."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 64 << 20):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[str, tuple[list, int]] = OrderedDict()
        self.bytes = 0

    def history(self, response_id: str | None) -> list:
        if response_id is None:
            return []
        found = self._items.get(response_id)
        if found is None:
            raise InvalidRequest(
                f"previous response {response_id!r} not found: responses are kept in memory while "
                f"the server runs (the last {self.max_entries}, {self.max_bytes >> 20} MiB at "
                "most), and not at all with store: false", param="previous_response_id")
        self._items.move_to_end(response_id)
        return list(found[0])

    def save(self, response: dict, items: list, store: bool) -> None:
        if not store:
            return
        kept = items + ITEMS.validate_python(response["output"])
        size = len(ITEMS.dump_json(kept))
        if size > self.max_bytes:
            return
        self._items[response["id"]] = (kept, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            self.bytes -= self._items.popitem(last=False)[1][1]


# ---- chat chunks → Responses events -----------------------------------------------------------

def _id(prefix: str) -> str:
    return new_id(prefix, sep="_")


class ResponseRenderer(ChunkRenderer):
    """Chat chunks in, Responses stream events out; `response` is the object they add up to."""

    REASONING = "reasoning"
    TEXT = "message"

    def __init__(self, req: ResponsesRequest, usage: Usage,
                 on_done: Callable[[dict], None] = lambda response: None):
        self.usage, self.on_done = usage, on_done
        fmt = req.text.format if req.text and req.text.format else Format(type="text")
        choice = req.tool_choice
        self.response: dict[str, Any] = {
            "id": _id("resp"), "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "error": None, "incomplete_details": None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "model": req.model, "output": [], "parallel_tool_calls": req.parallel_tool_calls,
            "previous_response_id": req.previous_response_id,
            "reasoning": {"effort": req.reasoning.effort if req.reasoning else None,
                          "summary": None},
            "store": req.store, "temperature": req.temperature,
            "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True)},
            "tool_choice": choice.model_dump() if isinstance(choice, NamedTool) else (
                choice or "auto"),
            "tools": [t.model_dump(exclude_none=True) for t in req.function_tools()],
            "top_p": req.top_p, "truncation": "disabled", "usage": None,
            "metadata": req.metadata or {}}
        self._sequence = 0
        self._open: int | None = None          # output index of the item being streamed
        self._calls: dict[int, int] = {}       # chat tool-call index → output index
        self.started = False

    def _event(self, kind: str, **data) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return kind, event

    def _snapshot(self, kind: str) -> Event:
        return self._event(kind, response=copy.deepcopy(self.response))

    def start(self) -> list[Event]:
        if self.started:
            return []
        self.started = True
        return [self._snapshot("response.created"), self._snapshot("response.in_progress")]

    def _item(self) -> dict | None:
        return self.response["output"][self._open] if self._open is not None else None

    def _add_item(self, item: dict, part: dict | None) -> list[Event]:
        events = self._close_item()
        self.response["output"].append(item)
        self._open = index = len(self.response["output"]) - 1
        events.append(self._event("response.output_item.added", output_index=index,
                                  item=copy.deepcopy(item)))
        if part is not None:
            item["content"].append(part)
            events.append(self._event("response.content_part.added", item_id=item["id"],
                                      output_index=index, content_index=0,
                                      part=copy.deepcopy(part)))
        return events

    def _close_item(self) -> list[Event]:
        item = self._item()
        if item is None:
            return []
        index, self._open = self._open, None
        item["status"] = "completed"
        ids = {"item_id": item["id"], "output_index": index}
        events = []
        if item["type"] == "function_call":
            events.append(self._event("response.function_call_arguments.done", **ids,
                                      name=item["name"], arguments=item["arguments"]))
        else:
            part = item["content"][0]
            kind = "output_text" if item["type"] == "message" else "reasoning_text"
            extra = {"logprobs": []} if kind == "output_text" else {}
            events.append(self._event(f"response.{kind}.done", **ids, content_index=0,
                                      text=part["text"], **extra))
            events.append(self._event("response.content_part.done", **ids, content_index=0,
                                      part=copy.deepcopy(part)))
        return events + [self._event("response.output_item.done", output_index=index,
                                     item=copy.deepcopy(item))]

    def _append(self, kind: str, text: str) -> list[Event]:
        events = []
        item = self._item()
        if item is None or item["type"] != kind:
            if kind == "message":
                new = {"type": "message", "id": _id("msg"), "status": "in_progress",
                       "role": "assistant", "content": []}
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            else:
                new = {"type": "reasoning", "id": _id("rs"), "summary": [], "content": [],
                       "status": "in_progress"}
                part = {"type": "reasoning_text", "text": ""}
            events += self._add_item(new, part)
            item = new
        item["content"][0]["text"] += text
        kind_ = "output_text" if kind == "message" else "reasoning_text"
        extra = {"logprobs": []} if kind == "message" else {}
        return events + [self._event(f"response.{kind_}.delta", item_id=item["id"],
                                     output_index=self._open, content_index=0, delta=text,
                                     **extra)]

    def _tool_delta(self, call: dict) -> list[Event]:
        events = []
        fn = call.get("function") or {}
        if call.get("id"):
            events += self._add_item({"type": "function_call", "id": _id("fc"),
                                      "call_id": call["id"], "name": fn.get("name") or "",
                                      "arguments": "", "status": "in_progress"}, None)
            self._calls[call["index"]] = self._open
        arguments = fn.get("arguments")
        index = self._calls.get(call["index"])
        if arguments and index is not None:
            item = self.response["output"][index]
            item["arguments"] += arguments
            if index == self._open:  # parsers only extend the newest call; never a closed one
                events.append(self._event("response.function_call_arguments.delta",
                                          item_id=item["id"], output_index=index,
                                          delta=arguments))
        return events

    def _finish(self, finish_reason: str, stop_sequence: str | None = None) -> list[Event]:
        events = self._close_item()
        u = self.usage
        self.response["usage"] = {
            "input_tokens": u.prompt_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.prompt_tokens + u.completion_tokens}
        if finish_reason == "length":
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
        else:
            self.response["status"] = "completed"
        self.on_done(self.response)
        return events + [self._snapshot(f"response.{self.response['status']}")]

    def error_event(self, exc: LocalgwError) -> Event:
        return self._event("error", code=exc.code or exc.type, message=exc.message,
                           param=exc.param)


async def render_events(chunks, renderer: ResponseRenderer):
    """The Responses event stream of a chat call (an async iterator of chunks)."""
    async for chunk in chunks:
        for event in renderer.on_chunk(chunk):
            yield event
