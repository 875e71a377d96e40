"""What the lifespan builds once and every request shares: models, detectors, thread pools, metrics, streams."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from service.core.config import Settings
from service.core.metrics import Metrics
from service.core.threads import run_blocking
from service.faces.detectors import DetectorPool, detector_config
from service.faces.tracker import FaceTracker
from service.inference.models import LoadedModel
from service.inference.predictor import Predictor
from service.inference.registry import ModelRegistry
from service.streams.registry import StreamRegistry

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

    def tracker_for(self, model: LoadedModel) -> FaceTracker:
        """A detect-then-track state for one stream of `model`."""
        s = self.settings
        return FaceTracker(self.detector_for(model), s.detect_every, s.track_min_score)

    def predictor(self, model: LoadedModel) -> Predictor:
        if model.name not in self._predictors:
            self._predictors[model.name] = Predictor(model)
        return self._predictors[model.name]

    def load(self) -> dict[str, float]:
        """What autoscaling reads (`service.cluster.autoscaling`): open streams, and frames waiting for this
        instance: frames in a stream's slot and rows queued at the batchers."""
        queued = sum(b.queued_rows for m in self.registry.models.values() for b in m.batchers.values())
        return {"streams": float(len(self.streams)), "queued_frames": float(self.streams.waiting_frames() + queued)}

    async def run_blocking(self, fn: Callable[..., T], *args: object, pool: ThreadPoolExecutor | None = None) -> T:
        """Run CPU work in a pool (default: the streams'), off the event loop, keeping the request / stream id."""
        return await run_blocking(pool or self.cpu_pool, fn, *args)

    async def close(self) -> None:
        await self.registry.close()
        self.cpu_pool.shutdown(wait=False, cancel_futures=True)
        self.clip_pool.shutdown(wait=False, cancel_futures=True)
        self.inference_pool.shutdown(wait=False, cancel_futures=True)
        for pool in self.detectors.values():
            pool.close()
