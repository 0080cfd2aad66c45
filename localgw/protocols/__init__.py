"""Wire formats other than chat completions, at the edge of the one pipeline.

Each format has a request translator (the format's body → a pydantic model → the internal
`ChatRequest`, built directly) and a renderer (the chat's typed events, `chat.events` → the
format's stream events, and the collected body; the walk they share is `render.EventRenderer`):
`anthropic` holds both for Anthropic Messages; OpenAI Responses has `responses` (the request and
the stored responses) and `response_events` (the renderer). Templates, grammars, tool-call and
reasoning parsers, slots and cancellation stay below, shared: nothing under this package knows
which door a request came in by. Pure: no HTTP.
"""
