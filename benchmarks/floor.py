"""Floor: how close the student's inference is to what this CPU can compute at all.

The student's work per frame (encoder over one frame + head over one window, counted by
`training.models.count_macs`: convolutions, linear layers, attention; FLOPs = 2 x MACs) is set against the
machine's matrix-multiply rate, measured in the same run: float32 square GEMMs in numpy (its BLAS) and in ONNX
Runtime (a one-node MatMul graph; MLAS, the library that runs the model's convolutions), with the benchmark's
thread count. The floor is FLOPs / best GEMM rate: the time the frame would take if every operation ran at GEMM
speed. Measured ONNX Runtime time per frame (batch 1 and batch 32) against that floor says how much is overhead:
depthwise convolutions, memory traffic and per-operator dispatch cannot run at GEMM speed, so a small
MobileNet-style encoder sits far above the floor at batch 1 and closer to it in batches.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import BenchContext, latency_stats, time_calls

NAME = "floor"
SIZES = (256, 512, 1024)


def _ort_matmul(n: int, ctx: BenchContext, int8: bool = False):
    """A one-node n x n GEMM: float32 MatMul, or MatMulInteger on uint8 x int8 (what quantised convolutions run)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a, b, c = ((TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32) if int8 else (TensorProto.FLOAT,) * 3)
    graph = helper.make_graph([helper.make_node("MatMulInteger" if int8 else "MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", a, [n, n]),
                               helper.make_tensor_value_info("b", b, [n, n])],
                              [helper.make_tensor_value_info("c", c, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = ctx.n_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=ctx.ort_providers())


def dispatch_overhead(ctx: BenchContext, nodes: int = 64) -> float:
    """Microseconds ONNX Runtime spends per node on work too small to matter: a chain of `nodes` Relu nodes on a
    (1, 64) tensor, with the service's session options, timed per run and divided by the node count."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    names = [f"t{i}" for i in range(nodes + 1)]
    graph = helper.make_graph([helper.make_node("Relu", [names[i]], [names[i + 1]]) for i in range(nodes)], "chain",
                              [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [1, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node
    options.intra_op_num_threads = ctx.n_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = {names[0]: np.ones((1, 64), np.float32)}
    s = time_calls(lambda: session.run(None, x), warmup=20, min_calls=200, min_seconds=0.3 if ctx.quick else 2.0)
    return float(np.median(s)) / nodes * 1e6


def optimised_nodes(path, ctx: BenchContext) -> int:
    """Nodes of a graph after ONNX Runtime's optimisations (what it really dispatches per run)."""
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return len(onnx.load(options.optimized_model_filepath).graph.node)


def _ort_call(session, a: np.ndarray, b: np.ndarray, ctx: BenchContext):
    """One GEMM per call; on CUDA with the operands already on the device (I/O binding), so no copy is timed."""
    if not ctx.cuda or session.get_providers()[0] != "CUDAExecutionProvider":
        return lambda: session.run(None, {"a": a, "b": b})
    import onnxruntime as ort

    binding = session.io_binding()
    binding.bind_ortvalue_input("a", ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0))
    binding.bind_ortvalue_input("b", ort.OrtValue.ortvalue_from_numpy(b, "cuda", 0))
    binding.bind_output("c", "cuda")
    return lambda: session.run_with_iobinding(binding)


def gemm_rates(ctx: BenchContext) -> list[dict]:
    from threadpoolctl import threadpool_limits

    timing = {"warmup": 2, "min_calls": 5, "min_seconds": 0.2 if ctx.quick else 1.0}
    rng = np.random.default_rng(0)
    rows = []
    for n in SIZES:
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        flops = 2.0 * n**3
        with threadpool_limits(ctx.n_threads):
            s = time_calls(lambda a=a, b=b: a @ b, **timing)
        rows.append({"engine": "numpy", "n": n, **latency_stats(s), "gflops": round(flops / np.median(s) / 1e9, 2)})
        session = _ort_matmul(n, ctx)
        s = time_calls(_ort_call(session, a, b, ctx), **timing)
        rows.append({"engine": "onnxruntime", "n": n, **latency_stats(s), "gflops": round(flops / np.median(s) / 1e9,
                                                                                          2)})
    return rows


def int8_gemm_rates(ctx: BenchContext) -> list[dict]:
    """ONNX Runtime's uint8 x int8 GEMM (MatMulInteger, int32 out) against its float32 GEMM, timed in turn: how much
    faster this CPU's int8 kernels are at all (VNNI where present). CPU only."""
    from benchmarks.common import time_interleaved

    rng = np.random.default_rng(1)
    rows = []
    for n in SIZES:
        a32, b32 = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        a8 = rng.integers(0, 256, (n, n), dtype=np.uint8)
        b8 = rng.integers(-128, 128, (n, n), dtype=np.int8)
        f32 = _ort_matmul(n, ctx)
        i8 = _ort_matmul(n, ctx, int8=True)
        times = time_interleaved({"fp32": lambda s=f32, a=a32, b=b32: s.run(None, {"a": a, "b": b}),
                                  "int8": lambda s=i8, a=a8, b=b8: s.run(None, {"a": a, "b": b})},
                                 warmup=2, min_calls=5, min_seconds=0.2 if ctx.quick else 1.0)
        f, i = float(np.median(times["fp32"])), float(np.median(times["int8"]))
        rows.append({"n": n, "fp32_ms": round(f * 1e3, 4), "int8_ms": round(i * 1e3, 4),
                     "int8_gops": round(2.0 * n**3 / i / 1e9, 2), "int8_over_fp32": round(i / f, 4)})
    return rows


def run(ctx: BenchContext) -> dict:
    import torch

    from benchmarks.bundle import bundled_models, open_session, require_runs, torch_graphs
    from training.models import count_macs

    torch.set_num_threads(ctx.n_threads)
    gemm = gemm_rates(ctx)
    best = max(gemm, key=lambda r: r["gflops"])
    int8_gemm = [] if ctx.cuda else int8_gemm_rates(ctx)
    per_node_us = dispatch_overhead(ctx)
    timing = {"warmup": 3, "min_calls": 10, "min_seconds": 0.2 if ctx.quick else 2.0}
    students = []
    models = [m for m in bundled_models(ctx) if set(m.graph_paths) == {"encoder", "head"}]
    require_runs(models)
    for m in models:
        graphs = torch_graphs(m)
        with torch.inference_mode():
            macs = {g: count_macs(graphs[g].module, *(torch.from_numpy(v) for v in m.random_inputs(g, 1).values()))
                    for g in ("encoder", "head")}
        flops = 2 * (macs["encoder"] + macs["head"])
        sessions = {g: open_session(m, g, p, ctx) for g, p in m.graph_paths.items()}
        per_frame = {}
        for batch in (1, 32):
            feeds = {g: m.random_inputs(g, batch) for g in sessions}

            def step(feeds=feeds, sessions=sessions) -> None:
                for g, s in sessions.items():
                    s.run(None, feeds[g])

            per_frame[batch] = float(np.median(time_calls(step, **timing))) / batch
        floor_s = flops / (best["gflops"] * 1e9)
        nodes = {g: optimised_nodes(p, ctx) for g, p in m.graph_paths.items()}
        dispatch_ms = sum(nodes.values()) * per_node_us / 1e3
        students.append({
            "optimised_nodes": nodes, "dispatch_ms_batch1": round(dispatch_ms, 4),
            "dispatch_share_batch1": round(dispatch_ms / (per_frame[1] * 1e3), 4),
            "model": m.name, "macs_per_frame": macs, "flops_per_frame": flops,
            "floor_ms": round(floor_s * 1e3, 5),
            "measured_ms_per_frame": {b: round(v * 1e3, 4) for b, v in per_frame.items()},
            "achieved_gflops": {b: round(flops / v / 1e9, 2) for b, v in per_frame.items()},
            "fraction_of_gemm_rate": {b: round(floor_s / v, 4) for b, v in per_frame.items()},
        })
    return {"name": NAME, "gemm": gemm, "best_gemm": {"engine": best["engine"], "n": best["n"],
                                                      "gflops": best["gflops"]},
            "dispatch_us_per_node": round(per_node_us, 3), "int8_gemm": int8_gemm,
            "students": students, "targets": [], "settings": {"threads": ctx.n_threads, "sizes": SIZES}}


def table(result: dict) -> list[str]:
    lines = ["GEMM (float32, n x n): " + ", ".join(f"{r['engine']} n={r['n']} {r['gflops']:.1f} GFLOP/s"
                                                  for r in result["gemm"])]
    if result.get("int8_gemm"):
        lines.append("GEMM int8 (uint8 x int8) / float32, ONNX Runtime: " + ", ".join(
            f"n={r['n']} {r['int8_over_fp32']:.2f}x ({r['int8_gops']:.0f} GOP/s)" for r in result["int8_gemm"]))
    for s in result["students"]:
        f = s["fraction_of_gemm_rate"]
        lines.append(f"{s['model']}: {s['flops_per_frame'] / 1e6:.1f} MFLOP/frame, floor {s['floor_ms']:.4f} ms at "
                     f"{result['best_gemm']['gflops']:.0f} GFLOP/s; measured {s['measured_ms_per_frame'][1]:.3f} ms "
                     f"(batch 1, {100 * f[1]:.1f} % of GEMM rate), {s['measured_ms_per_frame'][32]:.3f} ms/frame "
                     f"(batch 32, {100 * f[32]:.1f} %); {sum(s['optimised_nodes'].values())} nodes x "
                     f"{result['dispatch_us_per_node']:.1f} us dispatch = {100 * s['dispatch_share_batch1']:.0f} % "
                     f"of batch 1")
    return lines
