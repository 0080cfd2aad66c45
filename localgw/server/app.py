"""The application factory: settings in, a Starlette app out; state lives on `app.state`."""

from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from localgw.errors import LocalgwError
from localgw.manager import ModelManager
from localgw.protocols.responses import ResponseStore
from localgw.server import embed_routes, protocol_routes, routes
from localgw.server.cancel import ClientGone
from localgw.server.errors import handle_http_exception, handle_localgw_error
from localgw.server.limits import PreparePool
from localgw.server.metrics import Metrics, MetricsMiddleware
from localgw.server.middleware import (LOCAL_ORIGINS, APIKeyMiddleware, BodyLimitMiddleware,
                                      BrowserGuard, HostPolicy, OriginPolicy, RequestIDMiddleware,
                                      UnexpectedErrorMiddleware)
from localgw.server.openapi import openapi_route
from localgw.server.router import ModelRouter
from localgw.server.service import ChatService
from localgw.server.settings import ServerSettings
from localgw.store import ModelStore
from localgw.upstreams.registry import UpstreamRegistry

log = logging.getLogger("localgw.server")


def create_app(settings: ServerSettings, manager: ModelManager | None = None) -> Starlette:
    if manager is None:
        manager = ModelManager(ModelStore(), model_args=settings.models, options=settings.load,
                               max_loaded=settings.max_loaded, load_wait=settings.load_wait,
                               keep_alive=settings.keep_alive)
    state = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await app.state.upstreams.start()
        await manager.preload_models()
        try:
            yield
        finally:
            log.info("shutting down: cancelling work and freeing models")
            await manager.close()
            app.state.prepare_pool.close()
            await app.state.upstreams.close()

    app = Starlette(
        routes=[
            Route("/health", routes.health),
            Route("/metrics", routes.metrics),
            Route("/v1/models", routes.list_models),
            Route("/v1/models/{model_id:path}", routes.get_model),
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            Route("/v1/completions", routes.completions, methods=["POST"]),
            Route("/v1/messages", protocol_routes.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", protocol_routes.count_tokens, methods=["POST"]),
            Route("/v1/responses", protocol_routes.create_response, methods=["POST"]),
            Route("/v1/embeddings", embed_routes.embeddings, methods=["POST"]),
            Route("/v1/rerank", embed_routes.rerank, methods=["POST"]),
            Route("/rerank", embed_routes.rerank, methods=["POST"]),
            Route("/openapi.json", openapi_route),
        ],
        middleware=[
            Middleware(RequestIDMiddleware),
            Middleware(MetricsMiddleware, metrics_getter=lambda: state.get("metrics")),
            Middleware(BrowserGuard, hosts=HostPolicy.for_bind(settings.is_loopback,
                                                               settings.allowed_hosts),
                       origins=OriginPolicy(frozenset(settings.cors_origins))),
            Middleware(CORSMiddleware, allow_origin_regex=LOCAL_ORIGINS,
                       allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "OPTIONS"],
                       allow_headers=["*"], expose_headers=["X-Request-ID"]),
            Middleware(APIKeyMiddleware, api_key=settings.api_key),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
            Middleware(UnexpectedErrorMiddleware),
        ],
        exception_handlers={LocalgwError: handle_localgw_error,
                            HTTPException: handle_http_exception,
                            ClientGone: routes.client_gone},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.metrics = state["metrics"] = Metrics(manager)
    app.state.responses = ResponseStore()  # for previous_response_id, in memory only
    app.state.prepare_pool = PreparePool(settings.limits.prepare_threads)
    app.state.upstreams = UpstreamRegistry(settings.upstreams, recorder=app.state.metrics.upstreams)
    app.state.service = ChatService(manager, settings, app.state.prepare_pool, app.state.metrics,
                                    ModelRouter(app.state.upstreams, manager.knows,
                                                recorder=app.state.metrics.upstreams))
    app.state.embed_service = embed_routes.EmbedService(manager, app.state.prepare_pool)
    return app
