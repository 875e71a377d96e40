"""The FastAPI application. Heavy resources load once in the lifespan, never at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from service import __version__
from service.core.config import Settings, get_settings

log = logging.getLogger(__name__)


def find_model_dirs(settings: Settings) -> list[str]:
    root = settings.models_dir
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/manifest.json"))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.model_dirs = find_model_dirs(settings)
        log.info("models dir %s: %d model folder(s) found", settings.models_dir, len(app.state.model_dirs))
        yield

    app = FastAPI(title="PKDOT", version=__version__, lifespan=lifespan,
                  description="Pain and affect estimation from webcam frames with privileged-knowledge students.")

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["operations"], summary="Readiness: 200 only when models are loaded")
    async def readyz() -> JSONResponse:
        dirs = app.state.model_dirs
        if not dirs:
            return JSONResponse(status_code=503, content={
                "status": "not ready", "models": {},
                "reason": f"no model folder with a manifest.json under {settings.models_dir}",
            })
        return JSONResponse({"status": "ready", "models": {name: {"loaded": False} for name in dirs}})

    return app
