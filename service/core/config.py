"""Service settings: one pydantic-settings class, environment prefix `PKDOT_`, read through a cached getter."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PKDOT_", extra="ignore")

    host: str = "127.0.0.1"  # 0.0.0.0 inside containers
    port: int = Field(8000, ge=1, le=65535)
    models_dir: Path = Path("models")  # one sub-folder per exported model (manifest.json inside)
    providers: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"  # auto: TensorRT > CUDA > CPU, as available
    require_gpu: bool = False  # readiness fails unless every model runs on a GPU provider
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    api_key: str | None = None  # off by default; when set, REST needs header X-API-Key, WebSocket ?api_key=
    cors_origins: list[str] = []


@lru_cache
def get_settings() -> Settings:
    return Settings()
