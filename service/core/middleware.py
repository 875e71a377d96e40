"""The service's HTTP middleware: request ids, the body-size limit, request metrics and logs."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import TooLarge, error_response
from service.core.logging import request_id
from service.core.metrics import Metrics

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
