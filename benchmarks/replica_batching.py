"""Batching inside a replica: the service's `MicroBatcher` against Ray Serve's `@serve.batch`, on the same graph.

Both batch the rows of concurrent callers into one ONNX Runtime call of the bundled pain student's encoder (the
per-frame graph) and run that call in a worker thread (the event loop that holds the WebSockets never blocks):

    ours    service.inference.batching.MicroBatcher: a batch is whatever waited while the previous call ran
            (max_batch_delay_ms 0, the service's default), up to 8 rows
    serve   @serve.batch(max_batch_size=8, batch_wait_timeout_s=0): Serve's queue, the same limits

N callers (1 and 16) each send one frame, await its answer, send the next, for a fixed time; the two sides run
in turn over several rounds, inside one Serve replica (`@serve.batch` works only there), on an embedded Ray.
Reported per side: rows/s, call latency p50/p95, mean rows per call.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from statistics import median

import numpy as np

from benchmarks.common import BenchContext, Skipped

CALLERS = (1, 16)
MAX_BATCH = 8


SKIP = "Serve's batching needs the cluster extra: pip install -c constraints.txt -e '.[cluster]'"


def _serve_batcher(run, pool: ThreadPoolExecutor):
    try:
        from ray import serve
    except ImportError:
        raise Skipped(SKIP) from None

    class ServeBatched:
        calls = 0
        rows = 0

        @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.0)
        async def submit(self, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
            feed = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
            out = await asyncio.get_running_loop().run_in_executor(pool, run, feed)
            self.calls += 1
            self.rows += len(feeds)
            return [{k: v[i : i + 1] for k, v in out.items()} for i in range(len(feeds))]

    return ServeBatched()


async def _drive(submit, frame: dict[str, np.ndarray], callers: int, seconds: float) -> dict:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await submit(frame)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000.0
    return {"rows_per_s": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3), "rows": len(latencies)}


async def _compare(graph, frame: dict[str, np.ndarray], callers: int, seconds: float, rounds: int) -> dict:
    from service.core.metrics import Metrics
    from service.inference.batching import MicroBatcher

    pool = ThreadPoolExecutor(2, thread_name_prefix="bench-ort")
    ours = MicroBatcher("bench", "encoder", graph.run, pool, Metrics(), MAX_BATCH, 0.0, 4096)
    ours.start()
    serve_side = _serve_batcher(graph.run, pool)
    runs: dict[str, list[dict]] = {"ours": [], "serve": []}
    try:
        for _ in range(rounds):
            b0 = ours.batches
            r = await _drive(ours.submit, frame, callers, seconds)
            runs["ours"].append({**r, "rows_per_call": round(r["rows"] / max(ours.batches - b0, 1), 2)})
            c0, n0 = serve_side.calls, serve_side.rows
            r = await _drive(serve_side.submit, frame, callers, seconds)
            runs["serve"].append({**r, "rows_per_call": round((serve_side.rows - n0) / max(serve_side.calls - c0, 1),
                                                              2)})
    finally:
        await ours.close()
        pool.shutdown(wait=False)
    return {side: {k: median(r[k] for r in rs) for k in ("rows_per_s", "p50_ms", "p95_ms", "rows_per_call")}
            for side, rs in runs.items()}


def _open_encoder(models_dir: str, providers: str, threads: int):
    from pathlib import Path

    from pkdot_contract.manifest import load_manifest
    from service.inference.runtime import open_graph, requested_providers

    folder = Path(models_dir) / "pain-student"
    manifest = load_manifest(folder)
    spec = manifest.graphs["encoder"]
    graph = open_graph("encoder", folder / spec.file, spec, requested_providers(providers), threads)
    size = manifest.preprocessing.crop.size
    return graph, {"frames": np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)}


class BatchingReplica:
    """A Serve deployment that runs both batchers on one graph, in its own replica."""

    def __init__(self, models_dir: str, providers: str, threads: int) -> None:
        self.graph, self.frame = _open_encoder(models_dir, providers, threads)

    async def compare(self, callers: int, seconds: float, rounds: int) -> dict:
        return await _compare(self.graph, self.frame, callers, seconds, rounds)


def run(ctx: BenchContext) -> dict:
    try:
        import ray
        from ray import serve
    except ImportError:
        raise Skipped(SKIP) from None
    seconds, rounds = (2.0, 2) if ctx.quick else (5.0, 4)
    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False,
             num_cpus=ctx.cores)
    try:
        deployment = serve.deployment(BatchingReplica, ray_actor_options={"num_cpus": ctx.cores},
                                      max_ongoing_requests=64)
        handle = serve.run(deployment.bind(str(ctx.models_dir), ctx.providers, ctx.n_threads),
                           name="replica-batching", route_prefix=None)
        results = {str(n): handle.compare.remote(n, seconds, rounds).result(timeout_s=600) for n in CALLERS}
    finally:
        serve.shutdown()
        ray.shutdown()
    return {"name": "replica_batching", "callers": results, "targets": [],
            "settings": {"seconds": seconds, "rounds": rounds, "max_batch": MAX_BATCH, "graph": "pain-student/encoder"}}


def table(result: dict) -> list[str]:
    lines = [f"{'callers':>7} {'side':>6} {'rows/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'rows/call':>9}"]
    for n, sides in result["callers"].items():
        for side, r in sides.items():
            lines.append(f"{n:>7} {side:>6} {r['rows_per_s']:8.1f} {r['p50_ms']:7.3f} {r['p95_ms']:7.3f} "
                         f"{r['rows_per_call']:9.2f}")
    return lines
