"""Batching and workers: the same stream load with the frames' inference through the cross-stream micro-batchers
(`--stream-inference batched`), on (up to 8 rows per ONNX Runtime call, no added delay) and off
(`--max-batch-size 1`: one call per frame), and run inline in the thread that decoded the frame (the CPU default),
each with one server process and (full mode) with two worker processes (`--workers 2`, which share the port, the
stream limit and the metrics).

One server per setting, one after the other, each loaded with the same load generator levels (more streams than
the machine serves at 15 fps, where these settings matter). Per level and setting: frames answered per second, RTT
p50/p95, drops, the server's CPU time per answered frame (every worker process counted), and the mean rows per
call of the student's encoder (read from the server's /metrics). Reported: the throughput ratio on / off at each
level, and every setting side by side.
"""

from __future__ import annotations

import time

from benchmarks.common import BenchContext
from benchmarks.e2e import run_load, server_flags
from benchmarks.server import ServerProcess, batch_counts, mean_batch

NAME = "batching"
BATCHED = ["--stream-inference", "batched"]
MODES = {"on": BATCHED, "off": [*BATCHED, "--max-batch-size", "1"], "inline": ["--stream-inference", "inline"],
         "on, 2 workers": [*BATCHED, "--workers", "2"], "off, 2 workers": [*BATCHED, "--max-batch-size", "1",
                                                                              "--workers", "2"],
         "inline, 2 workers": ["--stream-inference", "inline", "--workers", "2"]}


def settings(ctx: BenchContext) -> dict:
    if ctx.quick:
        return {"levels": [32], "seconds": 4.0, "warmup": 1.0, "modes": ["on", "off"]}
    return {"levels": [32, 48], "seconds": 20.0, "warmup": 2.0, "modes": list(MODES)}


def run(ctx: BenchContext) -> dict:
    s = settings(ctx)
    results: dict[str, list[dict]] = {}
    for mode in s["modes"]:
        flags = MODES[mode]
        with ServerProcess(ctx, server_flags(ctx) + flags, label=f"batching-{mode}") as server:
            results[mode] = []
            for n in s["levels"]:
                ctx.log(f"  batching {mode}: {n} streams x {s['seconds']:g} s")
                before = batch_counts(server.metrics_text())
                r = run_load(ctx, server, n, s["seconds"], s["warmup"])
                r["mean_rows_per_call"] = mean_batch(before, batch_counts(server.metrics_text()))
                results[mode].append(r)
                time.sleep(1.0)
    ratios = []
    for on, off in zip(results["on"], results["off"], strict=True):
        ratios.append({"streams": on["streams"], "offered_fps": on["offered_fps"],
                       "answered_per_s": {"on": on["answered_per_s"], "off": off["answered_per_s"]},
                       "throughput_ratio_on_over_off": round(on["answered_per_s"] / off["answered_per_s"], 3)
                       if off["answered_per_s"] else None,
                       "rtt_p95_ms": {"on": on["rtt_ms"]["p95"], "off": off["rtt_ms"]["p95"]},
                       "server_cpu_ms_per_answer": {"on": on["server_cpu_ms_per_answer"],
                                                    "off": off["server_cpu_ms_per_answer"]},
                       "encoder_rows_per_call": {"on": _encoder_rows(on), "off": _encoder_rows(off)}})
    return {"name": NAME, "results": results, "ratios": ratios, "targets": [],
            "settings": {**s, "modes": {k: server_flags(ctx) + MODES[k] for k in s["modes"]}}}


def _encoder_rows(level: dict) -> float | None:
    return next((v for k, v in level["mean_rows_per_call"].items() if k.endswith("/encoder")), None)


def table(result: dict) -> list[str]:
    lines = [f"{'streams':>7} {'offered/s':>9} {'ans/s on':>9} {'ans/s off':>9} {'on/off':>6} {'p95 on':>8} "
             f"{'p95 off':>8} {'CPU ms/frame on':>15} {'off':>6} {'rows/call on':>12}"]
    for r in result["ratios"]:
        lines.append(f"{r['streams']:7d} {r['offered_fps']:9.0f} {r['answered_per_s']['on']:9.1f} "
                     f"{r['answered_per_s']['off']:9.1f} {r['throughput_ratio_on_over_off']:6.3f} "
                     f"{r['rtt_p95_ms']['on']:8.1f} {r['rtt_p95_ms']['off']:8.1f} "
                     f"{r['server_cpu_ms_per_answer']['on']:15.2f} {r['server_cpu_ms_per_answer']['off']:6.2f} "
                     f"{r['encoder_rows_per_call']['on'] or 0:12.2f}")
    if len(result["results"]) > 2:
        lines.append(f"{'setting':>16} {'streams':>7} {'ans/s':>7} {'p95 ms':>8} {'dropped':>7} {'CPU ms/frame':>12}")
        for mode, levels in result["results"].items():
            for lv in levels:
                lines.append(f"{mode:>16} {lv['streams']:7d} {lv['answered_per_s']:7.1f} "
                             f"{lv['rtt_ms']['p95'] or 0:8.1f} {lv['dropped']:7d} "
                             f"{lv['server_cpu_ms_per_answer'] or 0:12.2f}")
    return lines
