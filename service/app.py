"""The FastAPI application. Heavy resources load once in the lifespan, never at import time.

`create_app(settings)` wires the routers, the error mapping (`service.errors`), request ids and structured
request logs, the request-size limit, CORS and the lifespan that loads models, detectors and thread pools, and
closes every stream with code 1001 on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pkdot_contract import __version__
from service.api import demo, ops, predict, stream
from service.context import ServiceContext
from service.core.config import Settings, get_settings
from service.core.logging import request_id
from service.errors import WS_GOING_AWAY, ModelLoadError, TooLarge, error_response, register_exception_handlers
from service.faces import DetectorPool, detector_config
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.stream import StreamRegistry

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestMiddleware:
    """Per HTTP request: an id (X-Request-ID, echoed), the body-size limit, a metric and one log line.

    A body whose Content-Length is over the limit is refused with 413 before any of it is read; a body without
    one (chunked) is counted as it streams in and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        t0 = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise TooLarge(f"the request body is over the limit of {self.max_body} bytes")
            return message

        try:
            length = headers.get(b"content-length")
            too_big = length is not None and (not length.isdigit() or int(length) > self.max_body)
            if too_big:
                message = (f"the request body ({int(length)} bytes) is over the limit of {self.max_body} bytes"
                           if length.isdigit() else "invalid Content-Length header")
                response = error_response(413 if length.isdigit() else 400, message, headers={"connection": "close"})
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            duration = time.perf_counter() - t0
            self.metrics.requests.labels(path, str(status)).inc()
            log.info("request", extra={"method": scope["method"], "path": scope["path"], "route": path,
                                       "status": status, "duration_ms": round(duration * 1000, 2)})
            request_id.reset(token)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()
    streams = StreamRegistry(settings.max_streams)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        t0 = time.perf_counter()
        registry = ModelRegistry(settings)
        try:
            await asyncio.to_thread(registry.load)
        except ModelLoadError as exc:
            log.error("start-up failed: a model folder cannot be served", extra={"error": str(exc)})
            raise
        configs = {detector_config(m.manifest.preprocessing.detector, settings.face_min_score)
                   for m in registry.models.values()}
        detectors = {c: await asyncio.to_thread(DetectorPool, settings.detector_workers, c[1], c[0]) for c in configs}
        ctx = ServiceContext(
            settings=settings, metrics=metrics, registry=registry, detectors=detectors,
            cpu_pool=ThreadPoolExecutor(settings.resolved_preprocess_threads(), thread_name_prefix="pkdot-cpu"),
            clip_pool=ThreadPoolExecutor(settings.resolved_preprocess_threads(), thread_name_prefix="pkdot-clip"),
            inference_pool=ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="pkdot-ort"),
            streams=streams,
        )
        registry.start(ctx.inference_pool, metrics)
        streams.accepting = True
        app.state.ctx = ctx
        log.info("service ready", extra={"models": sorted(registry.models), "skipped": len(registry.skipped),
                                         "startup_ms": round((time.perf_counter() - t0) * 1000, 1)})
        try:
            yield
        finally:
            closed = await streams.close_all(WS_GOING_AWAY, "server shutting down", settings.shutdown_timeout_s)
            app.state.ctx = None
            await ctx.close()
            log.info("service stopped", extra={"streams_closed": closed})

    app = FastAPI(title="PKDOT", version=__version__, lifespan=lifespan,
                  description="Pain (0-4) and valence/arousal estimation from webcam frames by visual-only students "
                              "distilled from multimodal teachers. REST for images, clips and videos; WebSocket "
                              "/ws/stream?task=pain|affect for live frames.")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.streams = streams
    app.state.ctx = None
    register_exception_handlers(app)
    app.include_router(ops.router)
    app.include_router(predict.router)
    app.include_router(stream.router)
    app.include_router(demo.router)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body=settings.max_request_bytes)
    if settings.cors_origins:  # outermost, so that refusals (413, 401) carry CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "X-Request-ID", "Content-Type"], expose_headers=["X-Request-ID"])
    return app
