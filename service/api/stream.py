"""The WebSocket route: admission (API key, task, model, capacity), then a `StreamSession` runs the stream.

The handshake is always accepted so that a refusal can carry a close code and a reason the client can read
(a refusal before accepting is an HTTP 403 without either).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math

from fastapi import APIRouter, WebSocket

from service.api.deps import key_matches
from service.context import ServiceContext
from service.core.errors import WS_GOING_AWAY, WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER, ServiceError, close_reason
from service.streams.session import StreamSession

log = logging.getLogger(__name__)
router = APIRouter(tags=["stream"])
MAX_FPS = 1000.0


async def _refuse(websocket: WebSocket, ctx: ServiceContext | None, code: int, reason: str) -> None:
    if ctx is not None:
        ctx.metrics.streams_refused.labels(str(code)).inc()
    log.info("stream refused", extra={"code": code, "reason": reason})
    await websocket.close(code, close_reason(reason))


async def _authenticated(websocket: WebSocket, ctx: ServiceContext) -> bool:
    """The key from ?api_key=, the X-API-Key header, or a first message {"type": "auth", "api_key": ...}."""
    settings = ctx.settings
    given = websocket.query_params.get("api_key") or websocket.headers.get("x-api-key")
    if settings.api_key is None or given is not None:
        return key_matches(settings, given)
    try:
        async with asyncio.timeout(settings.ws_auth_timeout_s):
            message = await websocket.receive()
    except TimeoutError:
        return False
    text = message.get("text")
    if text is None or len(text) > settings.max_control_bytes:
        return False
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):  # malformed, or nested too deeply to parse
        return False
    ok = isinstance(msg, dict) and msg.get("type") == "auth" and isinstance(msg.get("api_key"), str)
    return ok and key_matches(settings, msg["api_key"])


def _fps(value: str | None) -> float | None:
    """?fps=: the rate the client sends frames at, in frames per second of its source (camera or video)."""
    if value is None:
        return None
    try:
        fps = float(value)
    except ValueError:
        fps = math.nan
    if not 0 < fps <= MAX_FPS:  # also NaN
        raise ServiceError(f"the query parameter fps must be a number of frames per second in (0, {MAX_FPS}], "
                           f"got {value[:20]!r}")
    return fps


@router.websocket("/ws/stream")
async def stream(websocket: WebSocket) -> None:
    """Binary JPEG/PNG frames in, one JSON result per processed frame out (see `service.streams.session`)."""
    await websocket.accept()
    ctx: ServiceContext | None = getattr(websocket.app.state, "ctx", None)
    if ctx is None or not ctx.streams.accepting:
        await _refuse(websocket, ctx, WS_GOING_AWAY, "the server is starting or shutting down")
        return
    if not await _authenticated(websocket, ctx):
        await _refuse(websocket, ctx, WS_POLICY_VIOLATION, "missing or wrong API key: add ?api_key=... or send "
                                                           '{"type": "auth", "api_key": ...} first')
        return
    task = websocket.query_params.get("task")
    try:
        if task is None:
            raise ServiceError("the query parameter task is required: ?task=pain or ?task=affect")
        model = ctx.registry.student(task, websocket.query_params.get("model"))
        fps = _fps(websocket.query_params.get("fps"))
    except ServiceError as exc:
        await _refuse(websocket, ctx, WS_POLICY_VIOLATION, exc.message)
        return
    session = StreamSession(websocket, ctx.predictor(model), ctx.tracker_for(model), ctx.settings, ctx.metrics,
                            ctx.cpu_pool, fps)
    if not ctx.streams.try_add(session):
        await _refuse(websocket, ctx, WS_TRY_AGAIN_LATER, f"server full: {ctx.streams.limit} streams are open (the "
                                                          "limit); try again later")
        return
    ctx.metrics.active_streams.inc()
    try:
        await session.run()
    finally:
        ctx.streams.discard(session)
        ctx.metrics.active_streams.dec()
