"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process).

Under `pkdot serve --workers N` (PROMETHEUS_MULTIPROC_DIR set by the parent, see service.core.workers) every worker
writes its values to the shared folder and /metrics sums the workers' files, whichever worker answers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from service.core.workers import PROMETHEUS_ENV, forget_dead_workers, worker_state_dir

STAGES = ("decode", "detect", "track", "preprocess", "queue", "inference", "postprocess", "total")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pkdot_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.stage_seconds = Histogram("pkdot_stage_seconds", "Time per pipeline stage (per frame, or per batch "
                                       "for inference)", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("pkdot_batch_size", "Rows per ONNX Runtime call", ["model", "graph"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.inference_errors = Counter("pkdot_inference_errors", "ONNX Runtime calls that raised",
                                        ["model", "graph"], registry=r)
        self.frames = Counter("pkdot_stream_frames", "Stream frames by outcome (processed, dropped, error)",
                              ["task", "outcome"], registry=r)
        self.dropped_frames = Counter("pkdot_dropped_frames", "Stream frames dropped because a newer one arrived",
                                      ["task"], registry=r)
        self.multiprocess = worker_state_dir() is not None and bool(os.environ.get(PROMETHEUS_ENV))
        self.active_streams = Gauge("pkdot_active_streams", "Open WebSocket streams", registry=r,
                                    multiprocess_mode="livesum")  # workers: the sum over the live ones
        self.streams_refused = Counter("pkdot_streams_refused", "WebSocket streams refused, by close code",
                                       ["code"], registry=r)

        self._children: dict[tuple, object] = {}  # labelled series looked up per frame: found once, kept

    def child(self, metric: Counter | Histogram, *labels: str):  # noqa: ANN201 - a prometheus_client child
        """`metric.labels(*labels)`, cached (a stream looks up the same few series for every frame)."""
        key = (id(metric), *labels)  # the metrics live as long as this object
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe(self, stage: str, seconds: float) -> None:
        self.child(self.stage_seconds, stage).observe(seconds)

    @contextmanager
    def timer(self, stage: str, timings: dict[str, float] | None = None) -> Iterator[None]:
        """Observe the block's duration under `stage`; also add it (ms) to `timings` when given."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.observe(stage, dt)
            if timings is not None:
                timings[stage] = timings.get(stage, 0.0) + dt * 1000.0

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        forget_dead_workers(Path(os.environ[PROMETHEUS_ENV]))
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)
        return generate_latest(every_worker)

    def close(self) -> None:
        """A worker that stops: its live gauges leave the sum."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())
