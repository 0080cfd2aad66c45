"""The OpenAI Responses API's stream: chat events (`chat.events`) → Responses events, and the
response object they add up to (non-streaming is "collect the stream")."""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

from localgw.chat.events import ToolCallDelta, UsageCounts
from localgw.chat.responses import Usage, new_id
from localgw.errors import LocalgwError
from localgw.protocols.render import Event, EventRenderer
from localgw.protocols.responses import Format, NamedTool, ResponsesRequest


def _id(prefix: str) -> str:
    return new_id(prefix, sep="_")


class ResponseRenderer(EventRenderer):
    """Chat events in, Responses stream events out; `response` is the object they add up to."""

    REASONING = "reasoning"
    TEXT = "message"

    def __init__(self, req: ResponsesRequest, usage: Usage | UsageCounts | None = None,
                 on_done: Callable[[dict], None] = lambda response: None):
        super().__init__(usage)
        self.on_done = on_done
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
        self._calls: dict[int, int] = {}       # the call's place in the choice → output index
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

    def _tool_delta(self, call: ToolCallDelta) -> list[Event]:
        events = []
        if call.id:
            events += self._add_item({"type": "function_call", "id": _id("fc"),
                                      "call_id": call.id, "name": call.name or "",
                                      "arguments": "", "status": "in_progress"}, None)
            self._calls[call.call] = self._open
        arguments = call.arguments
        index = self._calls.get(call.call)
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
