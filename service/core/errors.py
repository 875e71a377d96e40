"""Domain exceptions and the one place where they become HTTP statuses and WebSocket close codes.

Routers and the predictor raise these; nothing else in the service chooses a status code. Every error body is
`{"error": {"code": <HTTP status>, "message": "<what went wrong and how to fix it>"}}`.

| exception              | HTTP | WebSocket                      | when                                               |
|------------------------|------|--------------------------------|----------------------------------------------------|
| BadInput               | 400  | error message, stream goes on  | malformed or undecodable image, video, signal      |
| Unauthorized           | 401  | close 1008                     | missing or wrong API key                           |
| NotFound               | 404  | close 1008                     | unknown task or model, teacher not enabled         |
| TooLarge               | 413  | close 1009                     | body, frame or control message over its limit      |
| UnsupportedMedia       | 415  | close 1003                     | not multipart, not an image/video, text for binary |
| InvalidField           | 422  | error message, stream goes on  | missing or invalid field or parameter              |
| ServerBusy             | 503  | close 1013                     | stream limit reached, inference queue full         |
| InferenceFailed        | 503  | error message, stream goes on  | ONNX Runtime raised during a batch                 |
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pkdot_contract.preprocessing.media import MediaError
from pkdot_contract.preprocessing.signals import SignalError

log = logging.getLogger(__name__)

# WebSocket close codes (RFC 6455 section 7.4.1)
WS_GOING_AWAY = 1001
WS_UNSUPPORTED_DATA = 1003
WS_POLICY_VIOLATION = 1008
WS_MESSAGE_TOO_BIG = 1009
WS_INTERNAL_ERROR = 1011
WS_TRY_AGAIN_LATER = 1013
MAX_CLOSE_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
MAX_MESSAGE_CHARS = 600  # an error message, in the response and in the log


class ServiceError(Exception):
    """Base class: `status` is the HTTP status; `ws_close` the close code, or None when a stream goes on."""

    status = 500
    ws_close: int | None = WS_INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:  # messages may quote input (a file name, a field): keep them short
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        super().__init__(message)
        self.message = message

    def body(self) -> dict:
        return {"error": {"code": self.status, "message": self.message}}


class BadInput(ServiceError):
    status, ws_close = 400, None


class Unauthorized(ServiceError):
    status, ws_close = 401, WS_POLICY_VIOLATION


class NotFound(ServiceError):
    status, ws_close = 404, WS_POLICY_VIOLATION


class TooLarge(ServiceError):
    status, ws_close = 413, WS_MESSAGE_TOO_BIG


class UnsupportedMedia(ServiceError):
    status, ws_close = 415, WS_UNSUPPORTED_DATA


class InvalidField(ServiceError):
    status, ws_close = 422, None


class ServerBusy(ServiceError):
    status, ws_close = 503, WS_TRY_AGAIN_LATER


class InferenceFailed(ServiceError):
    status, ws_close = 503, None


class ModelLoadError(Exception):
    """A model folder that cannot be served (manifest, hashes, graphs or contract); stops start-up."""


def as_service_error(exc: Exception) -> ServiceError:
    """Domain errors of the shared preprocessing, expressed as service errors."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, MediaError | SignalError):
        return BadInput(str(exc))
    return ServiceError("internal error")


def close_reason(message: str) -> str:
    """A close reason that fits in a WebSocket close frame (cut at a character boundary)."""
    data = message.encode()
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return message
    return data[: MAX_CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "..."


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def register_exception_handlers(app: FastAPI) -> None:
    """Map every domain exception (and FastAPI's own) to the JSON error body; bad input never becomes a 500."""

    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        log.info("request refused", extra={"status": exc.status, "reason": exc.message})
        return error_response(exc.status, exc.message)

    async def media_error(request: Request, exc: Exception) -> JSONResponse:
        return await service_error(request, as_service_error(exc))

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            allowed = (getattr(exc, "headers", None) or {}).get("Allow", "")
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal error; the server log has the details under this request id")

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(MediaError, media_error)
    app.add_exception_handler(SignalError, media_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
