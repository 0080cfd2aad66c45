"""Wire formats other than chat completions, one module each, at the edge of the one pipeline.

Each module holds a request translator (the format's body → a pydantic model → the internal
`ChatRequest`) and a renderer (`chat.completion.chunk` dicts → the format's stream events, and the
collected body). Templates, grammars, tool-call and reasoning parsers, slots and cancellation stay
below, shared: nothing under this package knows which door a request came in by. Pure: no HTTP.
"""
