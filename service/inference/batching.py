"""Cross-request micro-batching: rows for one graph from every stream and REST call share ONNX Runtime calls.

A `MicroBatcher` owns one asyncio worker per graph. The worker takes the oldest waiting request, then gathers
more until the batch holds `max_batch` rows or `max_delay` has passed since the first arrived, concatenates
them along the batch axis, runs the graph in a thread pool (the event loop never blocks), and hands each caller
its own rows back. Requests whose caller has gone (cancelled) are left out before the call. When ONNX Runtime
raises, every request of that batch gets `InferenceFailed` (503) and the worker carries on with the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from service.core.errors import InferenceFailed, ServerBusy
from service.core.metrics import Metrics

log = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Request:
    inputs: dict[str, np.ndarray]  # every array (rows, ...)
    rows: int
    future: asyncio.Future
    signature: tuple  # non-batch shapes: only requests with equal signatures are concatenated
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(self, model: str, graph: str, run: RunFn, executor: Executor, metrics: Metrics,
                 max_batch: int = 8, max_delay_s: float = 0.001, max_queue_rows: int = 1024) -> None:
        self.model, self.graph = model, graph
        self._run, self._executor, self._metrics = run, executor, metrics
        self.max_batch, self.max_delay_s, self.max_queue_rows = max_batch, max_delay_s, max_queue_rows
        self._pending: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self.batches = 0  # ONNX Runtime calls made

    @property
    def queued_rows(self) -> int:
        return sum(r.rows for r in self._pending)

    def start(self) -> None:
        if self._worker is None:
            name = f"batcher:{self.model}:{self.graph}"
            self._worker = asyncio.get_running_loop().create_task(self._work(), name=name)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        while self._pending:
            req = self._pending.popleft()
            if not req.future.done():
                req.future.set_exception(ServerBusy("the server is shutting down"))

    async def submit(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on `inputs` (each (rows, ...)); rows beyond `max_batch` are split over several calls."""
        rows = len(next(iter(inputs.values())))
        if rows <= self.max_batch:
            return await self._submit_one(inputs, rows)
        chunks = [{k: v[i : i + self.max_batch] for k, v in inputs.items()} for i in range(0, rows, self.max_batch)]
        parts = await asyncio.gather(*(self._submit_one(c, len(next(iter(c.values())))) for c in chunks))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    async def _submit_one(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        if self._worker is None:
            raise ServerBusy(f"model {self.model} is not running")
        queued = self.queued_rows
        if queued + rows > self.max_queue_rows:
            raise ServerBusy(f"model {self.model} has {queued} rows waiting; try again shortly")
        future = asyncio.get_running_loop().create_future()
        signature = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(inputs.items()))
        self._pending.append(_Request(inputs, rows, future, signature))
        self._wakeup.set()
        return await future

    async def _wait(self, timeout: float | None) -> bool:
        """Wait until a request is pending (True) or `timeout` seconds have passed (False)."""
        if self._pending:
            return True
        self._wakeup.clear()
        if timeout is None:
            await self._wakeup.wait()
            return True
        if timeout <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        return bool(self._pending)

    async def _gather(self) -> list[_Request]:
        await self._wait(None)
        first = self._pending.popleft()
        batch, rows = [first], first.rows
        deadline = time.perf_counter() + self.max_delay_s
        while rows < self.max_batch and await self._wait(deadline - time.perf_counter()):
            nxt = self._pending[0]
            if rows + nxt.rows > self.max_batch or nxt.signature != first.signature:
                break  # it stays first in line for the next batch
            batch.append(self._pending.popleft())
            rows += nxt.rows
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [r for r in batch if not r.future.done()]  # callers that went away are not computed
            if not live:
                continue
            now = time.perf_counter()
            for r in live:
                self._metrics.observe("queue", now - r.enqueued)
            names = list(live[0].inputs)
            feed = {k: np.concatenate([r.inputs[k] for r in live]) if len(live) > 1 else live[0].inputs[k]
                    for k in names}
            n = sum(r.rows for r in live)
            self._metrics.child(self._metrics.batch_size, self.model, self.graph).observe(n)
            t0 = time.perf_counter()
            try:
                out = await loop.run_in_executor(self._executor, self._run, feed)
            except asyncio.CancelledError:
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(ServerBusy("the server is shutting down"))
                raise
            except Exception as exc:  # ONNX Runtime failure: these requests fail, the worker carries on
                self._metrics.inference_errors.labels(self.model, self.graph).inc()
                log.error("inference failed", extra={"model": self.model, "graph": self.graph, "rows": n,
                                                     "error": f"{type(exc).__name__}: {exc}"})
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(InferenceFailed(f"inference failed in model {self.model} "
                                                               f"(graph {self.graph}); try again"))
                continue
            self._metrics.observe("inference", time.perf_counter() - t0)
            self.batches += 1
            start = 0
            for r in live:
                if not r.future.done():
                    r.future.set_result({k: v[start : start + r.rows] for k, v in out.items()})
                start += r.rows
