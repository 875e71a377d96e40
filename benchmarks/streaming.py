"""Streaming cost: the per-frame latency of the streaming student with temporal windows of 8 and 32 frames.

The student's head graph is exported from its training run at T = 8 and T = 32 (the bundled folder has T = 6,
measured too), with the project's exporter; per frame the service runs the encoder once (one frame) and the head
over the cached window (1, T, D). Both steps are timed in ONNX Runtime with the service's session options, the
windows interleaved call by call so that a change in machine load hits them alike. Target: T = 32 within 10 % of
T = 8 (the head only reads its receptive field, 15 frames, whatever T), judged on the median over blocks of 10
consecutive calls of each block's fastest call (other processes only ever add time); plain medians are reported
beside it.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import BenchContext, latency_stats, target

NAME = "streaming"
WINDOWS = (6, 8, 32)
BLOCK = 10  # calls per block for the block-minimum statistic


def _head_graph(model, window: int, ctx: BenchContext):
    """The head exported at `window` (cached by run weights and window), and the encoder of the bundled folder."""
    from benchmarks.bundle import _sha, torch_graphs
    from training.export.graphs import export_graph

    if window == model.manifest.preprocessing.window:
        return model.graph_paths["head"]
    path = ctx.cache_dir / "heads" / f"{model.name}-{_sha(model.run_dir / 'best.pt')}-T{window}.onnx"
    if not path.is_file():
        export_graph(torch_graphs(model, window)["head"], path, 17)
    return path


def run(ctx: BenchContext) -> dict:
    from benchmarks.bundle import bundled_models, open_session, require_runs
    from service.inference.runtime import open_graph, requested_providers

    calls = 1000 if ctx.quick else 5000
    out = []
    models = [m for m in bundled_models(ctx) if set(m.graph_paths) == {"encoder", "head"}]
    require_runs(models)
    for model in models:
        encoder = open_session(model, "encoder", model.graph_paths["encoder"], ctx)
        frame = model.random_inputs("encoder", 1)
        dim = encoder.run(["embedding"], frame)[0].shape[-1]
        spec = model.manifest.graphs["head"]  # input and output names: the same at every window
        heads = {t: open_graph("head", _head_graph(model, t, ctx), spec, requested_providers(ctx.providers),
                               ctx.n_threads).session for t in WINDOWS}
        names = [o.name for o in heads[WINDOWS[0]].get_outputs()]
        windows = {t: np.random.default_rng(t).standard_normal((1, t, dim), dtype=np.float32) for t in WINDOWS}
        step = {t: [] for t in WINDOWS}
        head_only = {t: [] for t in WINDOWS}
        for _ in range(10):  # warm-up
            for t in WINDOWS:
                encoder.run(["embedding"], frame)
                heads[t].run(names, {"embeddings": windows[t]})
        for _ in range(calls):
            for t in WINDOWS:
                t0 = time.perf_counter()
                encoder.run(["embedding"], frame)
                t1 = time.perf_counter()
                heads[t].run(names, {"embeddings": windows[t]})
                t2 = time.perf_counter()
                step[t].append(t2 - t0)
                head_only[t].append(t2 - t1)
        res = {"model": model.name, "embedding_dim": int(dim), "calls": calls,
               "step": {t: latency_stats(step[t]) for t in WINDOWS},
               "head": {t: latency_stats(head_only[t]) for t in WINDOWS}}
        res["block_min_ms"] = {t: round(_block_min(step[t]) * 1e3, 4) for t in WINDOWS}
        res["ratio_32_over_8"] = round(res["step"][32]["median_ms"] / res["step"][8]["median_ms"], 4)
        res["block_min_ratio_32_over_8"] = round(res["block_min_ms"][32] / res["block_min_ms"][8], 4)
        res["head_ratio_32_over_8"] = round(res["head"][32]["median_ms"] / res["head"][8]["median_ms"], 4)
        out.append(res)
    targets = [target(f"{r['model']}: per-frame latency T=32 / T=8", r["block_min_ratio_32_over_8"], 1.10, "x",
                      note=f"median of the best of every {BLOCK} interleaved calls; plain medians give "
                           f"{r['ratio_32_over_8']:.3f}") for r in out]
    return {"name": NAME, "students": out, "targets": targets, "settings": {"windows": WINDOWS, "calls": calls,
                                                                            "threads": ctx.n_threads}}


def _block_min(seconds: list[float]) -> float:
    """Median over blocks of BLOCK consecutive calls of each block's fastest call: the cost of the computation
    itself, robust to the other processes of a shared machine (which only ever add time)."""
    s = np.asarray(seconds)
    n = len(s) // BLOCK * BLOCK
    return float(np.median(s[:n].reshape(-1, BLOCK).min(axis=1)))


def table(result: dict) -> list[str]:
    lines = []
    for r in result["students"]:
        parts = ", ".join(f"T={t}: {r['step'][t]['median_ms']:.3f} ms (head {r['head'][t]['median_ms']:.3f})"
                          for t in WINDOWS)
        lines.append(f"{r['model']} per frame (encoder + head), medians: {parts}; T=32/T=8 = "
                     f"{r['ratio_32_over_8']:.3f} (best of {BLOCK}: {r['block_min_ratio_32_over_8']:.3f})")
    return lines
