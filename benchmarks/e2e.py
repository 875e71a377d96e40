"""End to end: one `pkdot serve` process, a load generator in its own process, 1 to 32 concurrent 15 fps streams.

Each level runs `benchmarks.loadgen` (real WebSocket clients on loopback, the benchmark video's JPEG frames at 15 fps
per stream) against the same server, in increasing order, while the server's CPU time and resident memory are
sampled from /proc. Per level: round-trip latency p50/p95/p99, frames sent / answered / dropped / errors /
unanswered, answered frames per second, server CPU (cores busy) and RSS, the client's own CPU (it shares the
machine), and the server's own per-stage timings from its answers.

Targets (2 CPU cores): 1 stream p50 <= 8 ms; 16 streams p95 <= 60 ms with zero errors and every frame either
answered or counted as dropped. Reported: the number of streams at which p95 first exceeds 100 ms (the full mode
goes on to 48 and 64 streams when 32 stays under it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, BenchContext, target
from benchmarks.server import Sampler, ServerProcess

NAME = "e2e"
FPS = 15.0


def server_flags(ctx: BenchContext) -> list[str]:
    """The flags every benchmarked server gets: room for 64 streams (the default limit, 16, would refuse the
    32-stream level), and on CUDA batches of up to 64 rows."""
    return ["--max-streams", "64", *(["--max-batch-size", "64"] if ctx.cuda else [])]


def settings(ctx: BenchContext) -> dict:
    if ctx.quick:
        return {"levels": [1, 4, 8, 16, 32], "seconds": 4.0, "warmup": 1.0, "extend": []}
    return {"levels": [1, 4, 8, 16, 32], "seconds": 30.0, "warmup": 2.0, "extend": [48, 64]}


def frames_file(ctx: BenchContext) -> Path:
    from benchmarks.video import frames_path

    return frames_path(ctx, FPS)


def run_load(ctx: BenchContext, server: ServerProcess, streams: int, seconds: float, warmup: float,
             task: str = "pain") -> dict:
    """One load level: the load generator's summary plus the server's CPU and RSS over it."""
    out = ctx.cache_dir / "logs" / f"loadgen-{server.label}-{streams}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    url = server.url.replace("http://", "ws://") + f"/ws/stream?task={task}"
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--streams", str(streams), "--fps", str(FPS),
           "--seconds", str(seconds), "--warmup", str(warmup), "--frames", str(frames_file(ctx)), "--out", str(out)]
    sampler = Sampler(server.pid).start()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
    usage = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(out.read_text())
    result["server"] = usage
    result["server_cpu_ms_per_answer"] = (round(1000 * usage["cpu_s"] / result["answered"], 3)
                                          if result["answered"] else None)
    return result


def run(ctx: BenchContext) -> dict:
    s = settings(ctx)
    frames_file(ctx)
    levels = []
    with ServerProcess(ctx, server_flags(ctx), label="e2e") as server:
        cold = server.cold_start_s
        from benchmarks.server import rss_mib

        idle = rss_mib(server.pid)
        for n in s["levels"] + s["extend"]:
            if n in s["extend"] and any(lv["rtt_ms"]["p95"] is not None and lv["rtt_ms"]["p95"] > 100 for lv in levels):
                break
            ctx.log(f"  e2e: {n} stream(s) x {s['seconds']:g} s")
            levels.append(run_load(ctx, server, n, s["seconds"], s["warmup"]))
            time.sleep(1.0)
        providers = {m["name"]: m["provider"] for m in (server.readiness or {}).get("models", [])}
    over = next((lv["streams"] for lv in levels if lv["rtt_ms"]["p95"] is not None and lv["rtt_ms"]["p95"] > 100),
                None)
    by_n = {lv["streams"]: lv for lv in levels}
    targets = []
    if 1 in by_n:
        targets.append(target("1 stream: RTT p50", by_n[1]["rtt_ms"]["p50"], 8.0, "ms"))
    if 16 in by_n:
        lv = by_n[16]
        targets += [target("16 streams: RTT p95", lv["rtt_ms"]["p95"], 60.0, "ms"),
                    target("16 streams: errors", lv["errors"], 0, "frames"),
                    target("16 streams: frames neither answered nor counted as dropped", lv["unanswered"]
                           + abs(lv["dropped"] - lv["dropped_seen_as_gaps"]), 0, "frames",
                           note=f"sent {lv['sent']}, answered {lv['answered']}, dropped {lv['dropped']}")]
    return {"name": NAME, "levels": levels, "p95_over_100ms_at_streams": over,
            "p95_over_100ms_note": (f"p95 first exceeds 100 ms at {over} streams" if over else
                                    f"p95 stays under 100 ms up to {levels[-1]['streams']} streams"),
            "cold_start_s": round(cold, 3), "rss_mib_ready": idle, "providers": providers, "targets": targets,
            "settings": {**s, "fps": FPS, "server_flags": server_flags(ctx), "task": "pain"}}


def table(result: dict) -> list[str]:
    lines = [f"{'streams':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'sent':>6} {'answered':>8} {'dropped':>7} "
             f"{'errors':>6} {'lost':>4} {'ans/s':>7} {'srv CPU':>7} {'srv RSS':>8} {'cli CPU':>7}"]
    for lv in result["levels"]:
        r = lv["rtt_ms"]
        lines.append(f"{lv['streams']:7d} {r['p50']:8.2f} {r['p95']:8.2f} {r['p99']:8.2f} {lv['sent']:6d} "
                     f"{lv['answered']:8d} {lv['dropped']:7d} {lv['errors']:6d} {lv['unanswered']:4d} "
                     f"{lv['answered_per_s']:7.1f} {lv['server']['cpu_cores']:7.2f} "
                     f"{lv['server']['rss_mib_max']:7.0f}M {lv['client_cpu_cores']:7.2f}")
    lines.append(result["p95_over_100ms_note"])
    return lines
