"""HTTP layer: Starlette app, middleware, SSE. Talks to the engine only through ModelManager."""
