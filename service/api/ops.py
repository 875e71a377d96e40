"""Operations routes: liveness, readiness, Prometheus metrics, and the loaded models' manifests."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from pkdot_contract import __version__
from service.api.deps import Ctx, require_api_key
from service.core.schemas import ErrorResponse, Health, ModelInfo, ModelList, ModelStatus, Readiness, SkippedModel
from service.inference.models import LoadedModel

router = APIRouter(tags=["operations"])
UNAUTHORIZED = {"model": ErrorResponse, "description": "missing or wrong API key (when the service sets one)"}


def model_status(model: LoadedModel, default: bool) -> ModelStatus:
    m = model.manifest
    return ModelStatus(name=m.name, version=m.version, task=m.task, role=m.role, streaming=model.streaming,
                       provider=model.provider, providers=model.providers, default=default)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok", version=__version__)


@router.get("/readyz", summary="Readiness: 200 only when models are loaded (on a GPU, when required)",
            response_model=Readiness, responses={503: {"model": Readiness, "description": "not ready"}})
async def readyz(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None:
        body = Readiness(status="not ready", reason="starting or stopping", models=[], skipped=[],
                         require_gpu=settings.require_gpu)
        return JSONResponse(body.model_dump(), status_code=503)
    reg = ctx.registry
    models = [model_status(m, reg.defaults.get(m.task) == m.name) for m in reg.models.values()]
    skipped = [SkippedModel(folder=f, error=e) for f, e in reg.skipped]
    reason = None
    if not any(m.role == "student" for m in models):
        reason = f"no student model is loaded from {settings.models_dir}"
    elif settings.require_gpu and not all(m.on_gpu for m in reg.models.values()):
        cpu = [m.name for m in reg.models.values() if not m.on_gpu]
        reason = f"require_gpu is set but {', '.join(cpu)} run(s) without a GPU provider"
    shared = ctx.streams.shared
    body = Readiness(status="not ready" if reason else "ready", reason=reason, models=models, skipped=skipped,
                     require_gpu=settings.require_gpu, workers_ready=shared.ready_workers() if shared else None)
    return JSONResponse(body.model_dump(), status_code=503 if reason else 200)


@router.get("/metrics", summary="Prometheus metrics", dependencies=[Depends(require_api_key)],
            response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 401: UNAUTHORIZED})
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", summary="The loaded models and their manifests", dependencies=[Depends(require_api_key)],
            responses={401: UNAUTHORIZED, 503: {"model": ErrorResponse, "description": "starting or stopping"}})
async def models(ctx: Ctx) -> ModelList:
    reg = ctx.registry
    out = []
    for m in reg.models.values():
        status = model_status(m, reg.defaults.get(m.task) == m.name)
        out.append(ModelInfo(**status.model_dump(), manifest=m.manifest.model_dump(mode="json")))
    return ModelList(models=out)
