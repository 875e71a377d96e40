"""The FastAPI application. Heavy resources load once in the lifespan, never at import time.

`create_app(settings)` wires the routers (`service.api`), the error mapping (`service.core.errors`), request ids,
structured request logs and the request-size limit (`service.core.middleware`), CORS, and the lifespan that loads
models, detectors and thread pools into the `ServiceContext` and closes every stream with code 1001 on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from pkdot_contract import __version__
from service.api import demo, ops, predict, stream
from service.context import ServiceContext
from service.core.config import Settings, get_settings
from service.core.errors import WS_GOING_AWAY, ModelLoadError, register_exception_handlers
from service.core.metrics import Metrics
from service.core.middleware import RequestMiddleware
from service.core.workers import SharedStreamCount, worker_state_dir
from service.faces.detectors import DetectorPool, detector_config
from service.inference.registry import ModelRegistry
from service.streams.registry import StreamRegistry

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()
    state = worker_state_dir()  # one of several workers: the stream limit and metrics span them all
    streams = StreamRegistry(settings.max_streams, SharedStreamCount(state) if state else None)

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
        if streams.shared is not None:
            streams.shared.mark_ready()
        app.state.ctx = ctx
        log.info("service ready", extra={"models": sorted(registry.models), "skipped": len(registry.skipped),
                                         "startup_ms": round((time.perf_counter() - t0) * 1000, 1)})
        try:
            yield
        finally:
            closed = await streams.close_all(WS_GOING_AWAY, "server shutting down", settings.shutdown_timeout_s)
            app.state.ctx = None
            await ctx.close()
            metrics.close()
            if streams.shared is not None:
                streams.shared.close()
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
