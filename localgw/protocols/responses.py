"""The OpenAI Responses API on the chat pipeline: body → ChatRequest, and the stored responses.
Its renderer (chat events → Responses events) is `protocols.response_events`.

Input items map onto chat messages: `message` items by role, `function_call` items onto the
assistant turn they follow (parallel calls are one turn), `function_call_output` items onto tool
messages, `reasoning` items onto the next assistant turn's `reasoning_content`. Responses are kept
in memory (a bounded LRU) as the item list they add up to, so `previous_response_id` is
"those items, then these" (as in OpenAI's API, the earlier `instructions` are not carried over).
Built-in tools of other types (web search and the like) cannot run
here and are left out.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from localgw.chat.requests import ChatRequest, ToolName, validate
from localgw.errors import InvalidRequest


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
        return validate(ChatRequest, fields)


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
