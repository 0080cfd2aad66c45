"""llama-cpp-python's JSON schema converter, handed to the chat layer (chat.schema_grammar).

Only the engine imports llama_cpp; the chat layer subclasses the converter it gets from here, on
the first grammar it builds, so importing the server does not load llama.cpp.
"""

from __future__ import annotations


def schema_converter_base() -> tuple[type, dict, set]:
    """llama-cpp-python's `SchemaConverter`, its `PRIMITIVE_RULES` and its `RESERVED_NAMES`."""
    from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, SchemaConverter

    return SchemaConverter, PRIMITIVE_RULES, RESERVED_NAMES
