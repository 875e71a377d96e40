"""REST prediction routes. Thin: the work is in `service.uploads.predict`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from pkdot_contract.tasks import TASKS
from service.api.deps import Ctx, ModelName, known_query_only, require_api_key
from service.core.errors import NotFound
from service.core.schemas import ErrorResponse, PredictResponse, TeacherResponse
from service.uploads import predict as uploads

ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "malformed or undecodable input", 401: "missing or wrong API key", 404: "unknown task or model",
    413: "body, image or video over its limit", 415: "not multipart, or a file that is not an image or video",
    422: "missing or invalid fields", 503: "busy, or inference failed; try again"}.items()}

_FILE = {"type": "array", "items": {"type": "string", "format": "binary"},
         "description": "one JPEG/PNG image; the field repeated for a clip (frames in order); or one short video"}
UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": _FILE}}}}}}
TEACHER_UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "signal"], "properties": {"file": _FILE, "signal": {
        "type": "string", "format": "binary",
        "description": "pain: a BioVid biosignal CSV (tab-separated: time gsr ecg emg_trapezius) or JSON "
                       '{"rate_hz": 512, "channels": {"gsr": [...], ...}}; affect: a WAV (or any audio file)'}}}}}}}

# the schema lists the tasks; any other value is still routed here and answered 404, as documented
TaskPath = Annotated[str, Path(json_schema_extra={"enum": list(TASKS)}, description="pain or affect")]

router = APIRouter(prefix="/predict", tags=["predict"], responses=ERRORS,
                   dependencies=[Depends(require_api_key), Depends(known_query_only)])


@router.post("/pain", summary="Pain level (0-4) from a face image, clip or short video", openapi_extra=UPLOAD)
async def predict_pain(request: Request, ctx: Ctx, model: ModelName = None) -> PredictResponse:
    return await uploads.predict_upload(ctx, request, "pain", model)


@router.post("/affect", summary="Valence and arousal from a face image, clip or short video", openapi_extra=UPLOAD)
async def predict_affect(request: Request, ctx: Ctx, model: ModelName = None) -> PredictResponse:
    return await uploads.predict_upload(ctx, request, "affect", model)


@router.post("/teacher/{task}", summary="Teacher (video + privileged signal) and student side by side",
             openapi_extra=TEACHER_UPLOAD)
async def predict_teacher(task: TaskPath, request: Request, ctx: Ctx, model: ModelName = None) -> TeacherResponse:
    return await uploads.compare_teacher(ctx, request, task, model)


@router.post("/{task}", include_in_schema=False)
async def unknown_task(task: str) -> None:
    raise NotFound(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
