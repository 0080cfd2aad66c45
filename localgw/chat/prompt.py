"""From an OpenAI chat request to the prompt text and sampling parameters. Pure functions."""

from __future__ import annotations

import json

from localgw.chat.defaults import DefaultSampling, resolve_defaults
from localgw.chat.requests import ChatRequest, Message, SamplingFields
from localgw.engine.types import SamplingParams
from localgw.errors import InvalidRequest


def check_conversation(messages: list[Message]) -> None:
    """Reject histories no template can render sensibly, with a message a person can act on."""
    pending_calls: set[str] = set()
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if msg.role in ("system", "developer", "user") and msg.text() is None:
            raise InvalidRequest(f"{where}: a {msg.role} message needs 'content'",
                                 param=f"{where}.content")
        if msg.role == "assistant":
            if msg.text() is None and not msg.tool_calls:
                raise InvalidRequest(f"{where}: an assistant message needs 'content' or "
                                     "'tool_calls'", param=f"{where}.content")
            for call in msg.tool_calls or []:
                if call.id:
                    pending_calls.add(call.id)
        if msg.role == "tool":
            if not msg.tool_call_id:
                raise InvalidRequest(f"{where}: a tool message needs 'tool_call_id'",
                                     param=f"{where}.tool_call_id")
            if msg.tool_call_id not in pending_calls:
                raise InvalidRequest(f"{where}: tool_call_id {msg.tool_call_id!r} matches no "
                                     "earlier assistant tool call", param=f"{where}.tool_call_id")


def _arguments(raw: str | dict) -> dict | str:
    """Templates index into arguments (`tool_call.arguments | tojson`), so give them an object."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw


def _as_text(raw: str | dict) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)


def template_messages(messages: list[Message], none_as_empty: bool = False,
                      arguments_as_text: bool = False) -> list[dict]:
    """Messages as chat templates expect them: plain-string content, `developer` as `system`.

    An assistant turn that only called tools has content None; some templates need exactly that
    (DeepSeek-R1 renders the calls only then), others crash on it (Qwen3 splits the content):
    `none_as_empty` gives those "". Likewise most templates want call arguments as an object,
    a few concatenate them as text (`arguments_as_text`).
    """
    out = []
    for msg in messages:
        text = msg.text()
        item: dict = {"role": "system" if msg.role == "developer" else msg.role,
                      "content": "" if text is None and none_as_empty else text}
        if msg.name:
            item["name"] = msg.name
        if msg.tool_call_id:
            item["tool_call_id"] = msg.tool_call_id
        if msg.tool_calls:
            item["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.function.name, "arguments": _as_text(c.function.arguments)
                              if arguments_as_text else _arguments(c.function.arguments)}}
                for c in msg.tool_calls]
        reasoning = msg.reasoning_content or msg.reasoning
        if reasoning:  # the names templates read it under
            item["reasoning_content"] = item["thinking"] = reasoning
        out.append(item)
    return out


def check_tool_choice(request: ChatRequest) -> None:
    choice = request.tool_choice
    if choice is None or isinstance(choice, str):
        if choice in ("required",) and not request.tools:
            raise InvalidRequest("tool_choice 'required' needs a non-empty 'tools'",
                                 param="tool_choice")
        return
    names = [t.function.name for t in request.tools or []]
    if choice.function.name not in names:
        raise InvalidRequest(f"tool_choice names function {choice.function.name!r}, which is not "
                             f"in tools ({', '.join(names) or 'none given'})",
                             param="tool_choice.function.name")


def sampling_params(request: SamplingFields, *, logprobs: bool = False, top_logprobs: int = 0,
                    grammar: str | None = None, defaults: DefaultSampling | None = None,
                    max_output: int | None = None) -> SamplingParams:
    """Engine parameters: what the request sends, else the model's defaults (chat.defaults).

    `max_output` caps a reply whose request names no max_tokens (serve --max-output).
    """
    d = defaults or resolve_defaults()

    def pick(value, name):
        return d.get(name) if value is None else value

    repeat = request.repetition_penalty or request.repeat_penalty or d.get("repetition_penalty", 1.0)
    return SamplingParams(
        temperature=pick(request.temperature, "temperature"),
        top_p=pick(request.top_p, "top_p"),
        top_k=max(pick(request.top_k, "top_k") or 0, 0),
        min_p=pick(request.min_p, "min_p") or 0.0,
        seed=request.seed,
        frequency_penalty=request.frequency_penalty or 0.0,
        presence_penalty=request.presence_penalty or 0.0,
        repeat_penalty=repeat,
        logit_bias={int(k): float(v) for k, v in (request.logit_bias or {}).items()},
        max_tokens=request.token_limit or max_output,
        stop=request.stop_list,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        grammar=grammar,
    )
