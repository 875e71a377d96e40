"""Run the inference service with uvicorn (`pkdot serve`). Flags override `PKDOT_*` environment variables."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (default 127.0.0.1; PKDOT_HOST)")
    p.add_argument("--port", type=int, help="port (default 8000; PKDOT_PORT)")
    p.add_argument("--models-dir", type=Path, help="folder of exported models (default models/; PKDOT_MODELS_DIR)")
    p.add_argument("--providers", choices=["auto", "cpu", "cuda", "tensorrt"], help="ONNX Runtime providers")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.core.config import Settings

    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    settings = Settings(**overrides)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                ws_per_message_deflate=False)
    return 0
