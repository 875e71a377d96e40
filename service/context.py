"""What the lifespan builds once and every request shares: models, detectors, thread pools, metrics, streams."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from service.core.config import Settings
from service.faces import DetectorPool, detector_config
from service.metrics import Metrics
from service.predictor import Predictor
from service.registry import LoadedModel, ModelRegistry
from service.stream import StreamRegistry

T = TypeVar("T")


@dataclass
class ServiceContext:
    settings: Settings
    metrics: Metrics
    registry: ModelRegistry
    detectors: dict[tuple[str, float], DetectorPool]  # by (detector name, min_score), as the manifests ask
    cpu_pool: ThreadPoolExecutor  # streams: decode, detect or track, crop (short jobs, one frame each)
    clip_pool: ThreadPoolExecutor  # REST: whole clips and videos, signals (long jobs: kept apart from the streams')
    inference_pool: ThreadPoolExecutor  # ONNX Runtime calls (the batchers')
    streams: StreamRegistry
    _predictors: dict[str, Predictor] = field(default_factory=dict)

    def detector_for(self, model: LoadedModel) -> DetectorPool:
        return self.detectors[detector_config(model.manifest.preprocessing.detector, self.settings.face_min_score)]

    def predictor(self, model: LoadedModel) -> Predictor:
        if model.name not in self._predictors:
            self._predictors[model.name] = Predictor(model)
        return self._predictors[model.name]

    async def run_blocking(self, fn: Callable[..., T], *args: object, pool: ThreadPoolExecutor | None = None) -> T:
        """Run CPU work in a pool (default: the streams'), off the event loop, keeping the request / stream id."""
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool or self.cpu_pool,
                                                                functools.partial(ctx.run, fn, *args))

    async def close(self) -> None:
        await self.registry.close()
        self.cpu_pool.shutdown(wait=False, cancel_futures=True)
        self.clip_pool.shutdown(wait=False, cancel_futures=True)
        self.inference_pool.shutdown(wait=False, cancel_futures=True)
        for pool in self.detectors.values():
            pool.close()
