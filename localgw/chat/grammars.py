"""Grammars that force structured output: JSON objects, JSON schemas, and tool calls written in
each model family's own format (so the next turn's history stays the model's own; each family
builds its own, see chat.families).

Pure composition over a schema converter (chat.schema_grammar.JsonSchemaConverter), passed in.
Every schema passes chat/schema_check.py first, tools' parameter schemas included, and a grammar
past the converter's size, depth or build-time budget is a 400 naming the limit.
Control tokens cannot be produced under a grammar, so a format that opens with one gets it as a
prefill: text appended to the prompt that the output parser also reads first.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from localgw.chat.families import family_of
from localgw.chat.families.base import CallGrammar, ChatFormat, Converter, Forced, params
from localgw.chat.gbnf import GrammarTooLarge
from localgw.chat.schema_check import PARAM, check_schema
from localgw.errors import InvalidRequest

log = logging.getLogger("localgw.chat")

__all__ = ["Converter", "Forced", "json_object_grammar", "json_schema_grammar",
           "tool_call_grammar"]


# What a converter raises on a schema it cannot take apart (a recursive $ref that never reaches
# a value, a shape schema_check let through): the request's schema, not the server, is at fault.
_CONVERTER_FAULTS = (KeyError, TypeError, AttributeError, ValueError, OverflowError,
                     AssertionError, IndexError, RecursionError)


@contextmanager
def _budget(param: str):
    """A grammar past the converter's budget is the request's fault: a 400 naming the limit;
    so is a schema the converter cannot take apart."""
    try:
        yield
    except GrammarTooLarge as exc:
        raise InvalidRequest(f"{exc}; simplify the schema", param=param,
                             code="grammar_too_large") from None
    except _CONVERTER_FAULTS as exc:
        log.warning("a schema the grammar converter could not take apart: %s: %s",
                    type(exc).__name__, exc)
        raise InvalidRequest(f"the JSON schema cannot be turned into a grammar "
                             f"({type(exc).__name__}: {exc}); simplify it", param=param,
                             code="unsupported_schema") from None


def json_object_grammar(conv: Converter) -> str:
    return conv.grammar(conv.add_schema({"type": "object"}, "json"))


def json_schema_grammar(conv: Converter, schema: dict) -> str:
    check_schema(schema)
    with _budget(PARAM):
        return conv.grammar(conv.add_schema(schema, "json"))


def _check_tool_schemas(tools: list[dict]) -> None:
    for i, tool in enumerate(tools):
        try:
            check_schema(params(tool))
        except InvalidRequest as exc:
            raise InvalidRequest(exc.message.replace("JSON schema", f"tools[{i}] parameters schema"),
                                 param=f"tools[{i}].function.parameters",
                                 code="unsupported_schema") from None


def tool_call_grammar(conv: Converter, fmt: ChatFormat, tools: list[dict], parallel: bool) -> Forced:
    """Force at least one call to one of `tools`, in the template's native format."""
    _check_tool_schemas(tools)
    with _budget("tools"):
        return family_of(fmt).tool_grammar(CallGrammar(conv, tools, parallel), fmt)
