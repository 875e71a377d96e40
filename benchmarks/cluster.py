"""Cluster: the Ray Serve path against plain uvicorn (1 and 16 streams), and answers/s with 1 and 2 replicas.

Every server is a real `pkdot serve` process (`benchmarks.server.ServerProcess`) and the load a real load
generator in its own process (`benchmarks.loadgen`, 15 fps per stream), as in the e2e benchmark:

    plain      pkdot serve: uvicorn, one process
    ray        pkdot serve --cluster: an embedded one-node Ray, Serve's HAProxy ingress (the default), 1 replica
    ray-proxy  the same through Serve's own proxy actor (RAY_SERVE_ENABLE_HA_PROXY=0), 1 replica
    ray x2     Serve's HAProxy ingress, 2 replicas

The plain server stays up while each Ray server runs, and the two are measured in turn, level by level, several
rounds (plain, ray, plain, ray, ...), so that the machine's load hits both sides alike; each ratio is the median
over rounds of ray / plain measured back to back. Throughput: 32 streams (more than one 2-core machine answers),
the machine as one replica (replica_num_cpus 2: its thread pools use both cores) against two (1 CPU each),
alternated the same way (each Ray server started anew), plain uvicorn beside them, with the machine's CPU use
(/proc/stat). Target: Ray path RTT p50 <= 1.5x plain uvicorn at 1 stream.
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import median

from benchmarks.common import BenchContext, target
from benchmarks.e2e import frames_file, run_load, server_flags
from benchmarks.server import ServerProcess

NAME = "cluster"
LEVELS = (1, 16)
SATURATE = 32  # streams for the throughput comparison


def settings(ctx: BenchContext) -> dict:
    if ctx.quick:
        return {"rounds": 2, "seconds": 5.0, "warmup": 1.0, "throughput_seconds": 6.0, "throughput_rounds": 1}
    return {"rounds": 3, "seconds": 20.0, "warmup": 2.0, "throughput_seconds": 20.0, "throughput_rounds": 2}


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _load(ctx: BenchContext, server: ServerProcess, streams: int, seconds: float, warmup: float) -> dict:
    busy0, total0 = _cpu_times()
    r = run_load(ctx, server, streams, seconds, warmup)
    busy1, total1 = _cpu_times()
    return {"streams": streams, "label": server.label, "rtt_ms": r["rtt_ms"], "answered_per_s": r["answered_per_s"],
            "sent": r["sent"], "answered": r["answered"], "dropped": r["dropped"], "errors": r["errors"],
            "unanswered": r["unanswered"], "machine_cpu_busy": round((busy1 - busy0) / max(total1 - total0, 1), 3),
            "client_cpu_cores": r["client_cpu_cores"]}


def _cluster_server(ctx: BenchContext, label: str, replicas: int, haproxy: bool) -> ServerProcess:
    flags = [*server_flags(ctx), "--cluster", "--min-replicas", str(replicas), "--max-replicas", str(replicas),
             "--replica-num-cpus", f"{ctx.cores / replicas:g}"]  # the machine split into `replicas` parts
    env = {"RAY_SERVE_ENABLE_HA_PROXY": "1" if haproxy else "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_worker_niceness": "0"}  # as plain uvicorn runs: Ray's default (15) yields the CPU to anything else
    return ServerProcess(ctx, flags, env=env, label=label, stop_timeout_s=90.0)


def _ratio(pairs: list[tuple[dict, dict]], key: str) -> float | None:
    values = [r["rtt_ms"][key] / p["rtt_ms"][key] for p, r in pairs if p["rtt_ms"][key] and r["rtt_ms"][key]]
    return round(median(values), 3) if values else None


def _overhead(ctx: BenchContext, plain: ServerProcess, label: str, haproxy: bool, s: dict) -> dict:
    """Ray (1 replica) against the plain server, level by level, alternated over rounds."""
    out: dict = {"label": label, "levels": {}}
    with _cluster_server(ctx, label, 1, haproxy) as ray:
        out["cold_start_s"] = round(ray.cold_start_s, 1)
        for n in LEVELS:
            pairs = []
            for k in range(s["rounds"]):
                ctx.log(f"  cluster: {n} stream(s), round {k + 1}: plain, then {label}")
                pairs.append((_load(ctx, plain, n, s["seconds"], s["warmup"]),
                              _load(ctx, ray, n, s["seconds"], s["warmup"])))
                time.sleep(1.0)
            out["levels"][str(n)] = {"rounds": pairs, "p50_ratio": _ratio(pairs, "p50"),
                                "p95_ratio": _ratio(pairs, "p95")}
    return out


def _throughput(ctx: BenchContext, plain: ServerProcess, s: dict) -> dict:
    """Answers/s at SATURATE streams: the machine as 1 replica (every core) and as 2 (half each), alternated over
    rounds (a fresh cluster each time), with the plain server beside them."""
    runs: dict[str, list[dict]] = {"plain": [], "1": [], "2": []}
    for k in range(s["throughput_rounds"]):
        ctx.log(f"  cluster: {SATURATE} streams, plain uvicorn, round {k + 1}")
        runs["plain"].append(_load(ctx, plain, SATURATE, s["throughput_seconds"], s["warmup"]))
        for replicas in (1, 2):
            ctx.log(f"  cluster: {SATURATE} streams, {replicas} replica(s), round {k + 1}")
            with _cluster_server(ctx, f"ray-x{replicas}", replicas, True) as ray:
                runs[str(replicas)].append(_load(ctx, ray, SATURATE, s["throughput_seconds"], s["warmup"]))
    rate = {n: median(r["answered_per_s"] for r in rs) for n, rs in runs.items()}
    return {"streams": SATURATE, "runs": runs, "answers_per_s": rate,
            "speedup_2_over_1": round(rate["2"] / rate["1"], 3) if rate["1"] else None}


def run(ctx: BenchContext) -> dict:
    s = settings(ctx)
    frames_file(ctx)
    with ServerProcess(ctx, server_flags(ctx), label="plain") as plain:
        ray = _overhead(ctx, plain, "ray", True, s)
        proxy = _overhead(ctx, plain, "ray-proxy", False, s)
        throughput = _throughput(ctx, plain, s)
    one = ray["levels"]["1"]
    targets = [target("Ray path (HAProxy ingress) RTT p50 / plain uvicorn, 1 stream", one["p50_ratio"], 1.5, "x",
                      note="median over rounds of back-to-back runs")]
    return {"name": NAME, "overhead": {"ray": ray, "ray-proxy": proxy}, "throughput": throughput,
            "targets": targets, "settings": {**s, "levels": LEVELS, "fps": 15.0, "task": "pain",
                                             "server_flags": server_flags(ctx)}}


def table(result: dict) -> list[str]:
    lines = [f"{'path':>10} {'streams':>7} {'plain p50/p95 ms':>17} {'ray p50/p95 ms':>15} {'p50 ratio':>9} "
             f"{'p95 ratio':>9}"]
    for label, o in result["overhead"].items():
        for n, lv in o["levels"].items():
            p = median(pr[0]["rtt_ms"]["p50"] for pr in lv["rounds"])
            p95 = median(pr[0]["rtt_ms"]["p95"] for pr in lv["rounds"])
            r = median(pr[1]["rtt_ms"]["p50"] for pr in lv["rounds"])
            r95 = median(pr[1]["rtt_ms"]["p95"] for pr in lv["rounds"])
            lines.append(f"{label:>10} {int(n):7d} {p:8.2f}/{p95:8.2f} {r:7.2f}/{r95:7.2f} {lv['p50_ratio']:9.3f} "
                         f"{lv['p95_ratio']:9.3f}")
    t = result["throughput"]
    busy = {n: median(r["machine_cpu_busy"] for r in rs) for n, rs in t["runs"].items()}
    lines.append(f"{t['streams']} streams: plain {t['answers_per_s']['plain']:.1f} answers/s, 1 replica "
                 f"{t['answers_per_s']['1']:.1f} (machine CPU {busy['1']:.0%}), 2 replicas "
                 f"{t['answers_per_s']['2']:.1f} (CPU {busy['2']:.0%}): "
                 f"{t['speedup_2_over_1']:.2f}x")
    return lines
