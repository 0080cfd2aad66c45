"""What a chat produces, as typed events: the one stream every wire format renders.

`ChatEvents` turns the engine's events (`engine.types`) into these, one `MessageParser` per
choice. Each event names its choice (`index`); the parser guarantees the order within a choice
(reasoning, then text, then tool calls, then the finish). Renderers read them directly:
`chat.responses.ChatChunker` (OpenAI's `chat.completion.chunk`), `protocols.anthropic`
and `protocols.responses`. An upstream's OpenAI chunks are read into the same events
(`chat.responses.chunk_events`), so the other formats render a remote model the same way.

`UsageCounts` carries the counts so far (the call's `chat.responses.Usage` is the running
total); it comes before the events that read it: after the prompt is in, and before a choice's
finish.
A delta's `logprob` is its token's (OpenAI's chunks put it on the token's first delta): a token
with a logprob and nothing to show is an empty `TextDelta` carrying it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Union

from localgw.engine.types import ChoiceDone, PromptDone, TokenLogprob, TokenText


@dataclass(frozen=True, slots=True)
class ChoiceStart:
    """A choice's first event: the reply has begun (OpenAI's `role` chunk)."""

    index: int


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str
    logprob: TokenLogprob | None = None


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    index: int
    text: str
    logprob: TokenLogprob | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A tool call's start (with `id` and `name`) or a fragment of its arguments."""

    index: int
    call: int                  # the call's place in the choice's calls
    id: str | None = None      # only on the call's first delta
    name: str | None = None
    arguments: str = ""
    logprob: TokenLogprob | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    index: int
    reason: str                # "stop", "length" or "tool_calls"
    stop_sequence: str | None = None  # the stop string that ended it, if one did


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """The call's token counts so far, all choices (`chat.responses.Usage` is the running total)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


Delta = Union[TextDelta, ReasoningDelta, ToolCallDelta]
ChatEvent = Union[ChoiceStart, TextDelta, ReasoningDelta, ToolCallDelta, Finish, UsageCounts]


class ChatEvents:
    """Engine events in, chat events out; `usage` (a `chat.responses.Usage`) keeps the totals."""

    def __init__(self, new_output: Callable[[int], object], usage):
        self.new_output, self.usage = new_output, usage
        self._outputs: dict = {}   # choice index → its MessageParser

    def _counts(self) -> UsageCounts:
        u = self.usage
        return UsageCounts(u.prompt_tokens, u.completion_tokens, u.cached_tokens)

    def on_event(self, event) -> list[ChatEvent]:
        if isinstance(event, TokenText):
            parser = self._outputs.get(event.index)
            out: list = []
            if parser is None:
                parser = self._outputs[event.index] = self.new_output(event.index)
                out.append(ChoiceStart(event.index))
            deltas = parser.feed(event.text)
            if event.logprob:
                deltas = ([replace(deltas[0], logprob=event.logprob), *deltas[1:]] if deltas
                          else [TextDelta(event.index, "", event.logprob)])
            return out + deltas if out else deltas
        if isinstance(event, PromptDone):
            self.usage.prompt_tokens = event.prompt_tokens
            self.usage.cached_tokens = event.cached_tokens
            return [self._counts()]
        if isinstance(event, ChoiceDone):
            self.usage.completion_tokens += event.completion_tokens
            out = [self._counts()]
            parser = self._outputs.get(event.index)
            if parser is None:
                parser = self._outputs[event.index] = self.new_output(event.index)
                out.append(ChoiceStart(event.index))
            out += parser.finish()
            reason = "tool_calls" if parser.called_tools else event.finish_reason
            return out + [Finish(event.index, reason, event.stop_sequence)]
        return []
