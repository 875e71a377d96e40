"""uvicorn, with a graceful shutdown that closes every WebSocket stream with 1001 (going away) first.

Left alone, uvicorn closes open WebSockets with 1012 (service restart) before the application hears of the
shutdown. This server closes them itself, with 1001 and a reason, then lets uvicorn finish: in-flight HTTP
requests are answered within `shutdown_timeout_s`, then the lifespan unloads the models.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from service.core.config import Settings
from service.core.errors import WS_GOING_AWAY


def uvicorn_options(settings: Settings) -> dict:
    return dict(
        host=settings.host, port=settings.port, log_level=settings.log_level, log_config=None, access_log=False,
        lifespan="on", ws="websockets-sansio", ws_per_message_deflate=False,  # frames are JPEG: deflate only costs
        ws_max_size=2 * max(settings.max_frame_bytes, settings.max_control_bytes),  # beyond: protocol close 1009
        timeout_graceful_shutdown=settings.shutdown_timeout_s, server_header=False,
    )


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: object) -> uvicorn.Config:
    return uvicorn.Config(app, **{**uvicorn_options(settings), **overrides})


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.fastapi_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        streams = self.fastapi_app.state.streams
        await streams.close_all(WS_GOING_AWAY, "server shutting down", timeout=self.config.timeout_graceful_shutdown)
        await super().shutdown(sockets)
