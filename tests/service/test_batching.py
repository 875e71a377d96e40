"""The micro-batcher on its own: gathering, splitting results back, cancellation, failures, limits."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.core.errors import InferenceFailed, ServerBusy
from service.core.metrics import Metrics
from service.inference.batching import MicroBatcher


class FakeGraph:
    """y = 2x + row count of the batch; records the batch sizes; can be told to fail."""

    def __init__(self, seconds: float = 0.01) -> None:
        self.seconds, self.sizes, self.fail_next = seconds, [], False
        self.threads: set[str] = set()

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        self.sizes.append(len(feed["x"]))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("ONNX Runtime exploded")
        return {"y": feed["x"] * 2.0}


def _run(coro_fn, graph: FakeGraph, **kw):
    async def main():
        with ThreadPoolExecutor(1, thread_name_prefix="ort") as pool:
            b = MicroBatcher("m", "g", graph, pool, Metrics(), **kw)
            b.start()
            try:
                return await coro_fn(b)
            finally:
                await b.close()

    return asyncio.run(main())


def _x(i: int, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 3), float(i), np.float32)}


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    graph = FakeGraph()

    async def go(b):
        return await asyncio.gather(*(b.submit(_x(i)) for i in range(20)))

    outs = _run(go, graph, max_batch=8, max_delay_s=0.005)
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out["y"], np.full((1, 3), 2.0 * i))
    assert max(graph.sizes) == 8 and sum(graph.sizes) == 20 and len(graph.sizes) <= 4
    assert graph.threads == {"ort_0"}  # the work ran in the pool, off the event loop


def test_event_loop_stays_free_while_inference_runs() -> None:
    graph = FakeGraph(seconds=0.2)

    async def go(b):
        task = asyncio.ensure_future(b.submit(_x(1)))
        ticks = 0
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        return ticks

    assert _run(go, graph) >= 10


def test_large_requests_are_split_at_max_batch() -> None:
    graph = FakeGraph(seconds=0.0)

    async def go(b):
        return await b.submit({"x": np.arange(20 * 3, dtype=np.float32).reshape(20, 3)})

    out = _run(go, graph, max_batch=8)
    np.testing.assert_array_equal(out["y"], 2 * np.arange(60, dtype=np.float32).reshape(20, 3))
    assert sorted(graph.sizes) == [4, 8, 8]


def test_different_shapes_are_not_mixed() -> None:
    graph = FakeGraph()

    async def go(b):
        return await asyncio.gather(b.submit(_x(1)), b.submit({"x": np.ones((1, 5), np.float32)}), b.submit(_x(2)))

    outs = _run(go, graph, max_batch=8, max_delay_s=0.01)
    assert [o["y"].shape for o in outs] == [(1, 3), (1, 5), (1, 3)]


def test_a_failing_batch_fails_its_requests_and_the_next_one_works() -> None:
    graph = FakeGraph()

    async def go(b):
        graph.fail_next = True
        first = await asyncio.gather(b.submit(_x(1)), b.submit(_x(2)), return_exceptions=True)
        second = await b.submit(_x(3))
        return first, second

    first, second = _run(go, graph, max_batch=8, max_delay_s=0.01)
    assert all(isinstance(e, InferenceFailed) and e.status == 503 for e in first)
    np.testing.assert_array_equal(second["y"], np.full((1, 3), 6.0))


def test_cancelled_requests_are_not_computed() -> None:
    graph = FakeGraph(seconds=0.05)

    async def go(b):
        busy = asyncio.ensure_future(b.submit(_x(0)))  # occupies the worker
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(b.submit(_x(1)))
        await asyncio.sleep(0)
        gone.cancel()
        kept = await b.submit(_x(2))
        await busy
        return kept

    kept = _run(go, graph, max_batch=8, max_delay_s=0.0)
    np.testing.assert_array_equal(kept["y"], np.full((1, 3), 4.0))
    assert sum(graph.sizes) == 2  # the cancelled row never reached the graph


def test_full_queue_is_refused() -> None:
    graph = FakeGraph(seconds=0.05)

    async def go(b):
        first = [asyncio.ensure_future(b.submit(_x(i))) for i in range(3)]
        await asyncio.sleep(0.01)
        with pytest.raises(ServerBusy):
            await b.submit(_x(9, rows=2))
        await asyncio.gather(*first)

    _run(go, graph, max_batch=1, max_queue_rows=3)
