"""End to end: one `pkdot serve` process, a load generator in its own process, 1 to 32 concurrent 15 fps streams.

Each level runs `benchmarks.loadgen` (real WebSocket clients on loopback, the benchmark video's JPEG frames at 15 fps
per stream) against the same server, in increasing order, while the server's CPU time and resident memory are
sampled from /proc. Per level: round-trip latency p50/p95/p99, frames sent / answered / dropped / errors /
unanswered, answered frames per second, server CPU (cores busy) and RSS, the client's own CPU (it shares the
machine), and the server's own per-stage timings from its answers.

Targets (2 CPU cores): 1 stream p50 <= 5 ms; 16 streams p95 <= 60 ms with zero errors and every frame either
answered or counted as dropped; 48 streams p95 <= 100 ms, zero errors, at most 2 % of the frames dropped; at 32
streams at most 2.0 ms of server CPU per answered frame (its CPU seconds over the level, from /proc, for the server
process and its workers, divided by the frames answered). Reported: the number of streams at which p95 first
exceeds 100 ms (the full mode goes on to 48 and 64 streams whatever happens before).

`pkdot bench --url http://HOST:PORT` runs the same levels against a server running elsewhere (a deployment of
one's own): latency, throughput and drops as its clients see them; CPU and memory are not visible from outside.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, BenchContext, target
from benchmarks.server import RemoteServer, Sampler, ServerProcess

NAME = "e2e"
FPS = 15.0


def server_flags(ctx: BenchContext) -> list[str]:
    """The flags every benchmarked server gets: room for 64 streams (the default limit, 16, would refuse the
    32-stream level), and on CUDA batches of up to 64 rows."""
    return ["--max-streams", "64", *(["--max-batch-size", "64"] if ctx.cuda else [])]


def e2e_flags(ctx: BenchContext) -> list[str]:
    """The e2e server: as every benchmarked server, with one worker process per core (up to 2) - the deployment
    docs/benchmarks.md recommends for many streams; the batching benchmark compares one process and two."""
    return [*server_flags(ctx), "--workers", str(min(ctx.cores, 2))]


def settings(ctx: BenchContext) -> dict:
    if ctx.quick:
        return {"levels": [1, 4, 8, 16, 32], "seconds": 4.0, "warmup": 1.0}
    return {"levels": [1, 4, 8, 16, 32, 48, 64], "seconds": 30.0, "warmup": 2.0}


def frames_file(ctx: BenchContext) -> Path:
    from benchmarks.video import frames_path

    return frames_path(ctx, FPS)


def run_load(ctx: BenchContext, server: ServerProcess, streams: int, seconds: float, warmup: float,
             task: str = "pain") -> dict:
    """One load level: the load generator's summary plus the server's CPU and RSS over it."""
    out = ctx.cache_dir / "logs" / f"loadgen-{server.label}-{streams}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    url = server.url.replace("https://", "wss://").replace("http://", "ws://") + f"/ws/stream?task={task}"
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--streams", str(streams), "--fps", str(FPS),
           "--seconds", str(seconds), "--warmup", str(warmup), "--frames", str(frames_file(ctx)), "--out", str(out),
           *(["--remote"] if server.pid is None else [])]
    sampler = Sampler(server.pid).start() if server.pid is not None else None
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
    usage = sampler.stop() if sampler is not None else None
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(out.read_text())
    result["server"] = usage
    result["server_cpu_ms_per_answer"] = (round(1000 * usage["cpu_s"] / result["answered"], 3)
                                          if usage and result["answered"] else None)
    return result


def start_server(ctx: BenchContext, flags: list[str], label: str, env: dict[str, str] | None = None
                 ) -> ServerProcess | RemoteServer:
    """The server under test: `ctx.url`'s (nothing started), or a `pkdot serve` started here with `flags`."""
    return RemoteServer(ctx.url) if ctx.url else ServerProcess(ctx, flags, env=env, label=label)


def run(ctx: BenchContext) -> dict:
    s = settings(ctx)
    frames_file(ctx)
    levels = []
    with start_server(ctx, e2e_flags(ctx), "e2e") as server:
        cold = server.cold_start_s
        from benchmarks.server import tree_rss_mib

        idle = tree_rss_mib(server.pid) if server.pid is not None else None
        for n in s["levels"]:
            ctx.log(f"  e2e: {n} stream(s) x {s['seconds']:g} s" + (f" against {ctx.url}" if ctx.url else ""))
            levels.append(run_load(ctx, server, n, s["seconds"], s["warmup"]))
            time.sleep(1.0)
        providers = {m["name"]: m["provider"] for m in (server.readiness or {}).get("models", [])}
    over = next((lv["streams"] for lv in levels if lv["rtt_ms"]["p95"] is not None and lv["rtt_ms"]["p95"] > 100),
                None)
    by_n = {lv["streams"]: lv for lv in levels}
    targets = []
    if 1 in by_n:
        targets.append(target("1 stream: RTT p50", by_n[1]["rtt_ms"]["p50"], 5.0, "ms"))
    if 16 in by_n:
        lv = by_n[16]
        targets += [target("16 streams: RTT p95", lv["rtt_ms"]["p95"], 60.0, "ms"),
                    target("16 streams: errors", lv["errors"], 0, "frames"),
                    target("16 streams: frames neither answered nor counted as dropped", lv["unanswered"]
                           + abs(lv["dropped"] - lv["dropped_seen_as_gaps"]), 0, "frames",
                           note=f"sent {lv['sent']}, answered {lv['answered']}, dropped {lv['dropped']}")]
    if 32 in by_n and by_n[32]["server_cpu_ms_per_answer"] is not None:
        targets.append(target("32 streams: server CPU per answered frame", by_n[32]["server_cpu_ms_per_answer"], 2.0,
                              "ms"))
    if 48 in by_n:
        lv = by_n[48]
        targets += [target("48 streams: RTT p95", lv["rtt_ms"]["p95"], 100.0, "ms"),
                    target("48 streams: errors", lv["errors"], 0, "frames"),
                    target("48 streams: frames dropped", 100.0 * lv["dropped"] / max(lv["sent"], 1), 2.0, "%",
                           note=f"{lv['dropped']} of {lv['sent']}; neither answered nor counted: "
                                f"{lv['unanswered'] + abs(lv['dropped'] - lv['dropped_seen_as_gaps'])}")]
    if ctx.url:  # the targets are this project's, for its 2-core machine: a remote server is only described
        targets = []
    return {"name": NAME, "levels": levels, "p95_over_100ms_at_streams": over,
            "p95_over_100ms_note": (f"p95 first exceeds 100 ms at {over} streams" if over else
                                    f"p95 stays under 100 ms up to {levels[-1]['streams']} streams"),
            "cold_start_s": None if cold is None else round(cold, 3), "rss_mib_ready": idle, "providers": providers,
            "targets": targets,
            "settings": {**s, "fps": FPS, "server_flags": None if ctx.url else e2e_flags(ctx), "task": "pain",
                         "url": ctx.url}}


def table(result: dict) -> list[str]:
    lines = [f"{'streams':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'sent':>6} {'answered':>8} {'dropped':>7} "
             f"{'errors':>6} {'lost':>4} {'ans/s':>7} {'srv CPU':>7} {'ms/frame':>8} {'srv RSS':>8} {'cli CPU':>7}"]
    for lv in result["levels"]:
        r, srv = lv["rtt_ms"], lv.get("server")
        cpu = (f"{srv['cpu_cores']:7.2f} {lv['server_cpu_ms_per_answer'] or 0:8.2f} {srv['rss_mib_max']:7.0f}M"
               if srv else f"{'n/a':>7} {'n/a':>8} {'n/a':>8}")
        lines.append(f"{lv['streams']:7d} {r['p50'] or 0:8.2f} {r['p95'] or 0:8.2f} {r['p99'] or 0:8.2f} "
                     f"{lv['sent']:6d} {lv['answered']:8d} {lv['dropped']:7d} {lv['errors']:6d} "
                     f"{lv['unanswered']:4d} {lv['answered_per_s']:7.1f} {cpu} {lv['client_cpu_cores']:7.2f}")
    lines.append(result["p95_over_100ms_note"])
    return lines
