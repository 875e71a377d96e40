"""Memory and start: cold start to /readyz, resident memory with every bundled model loaded, and its growth over a
stream soak.

- Cold start: from spawning `pkdot serve` (a new Python process: imports, manifest and sha256 checks, ONNX Runtime
  sessions, warm-up of every batch size, MediaPipe detectors) to the first 200 from /readyz, polled every 20 ms.
  Repeated (3 times in the full mode); target <= 5 s on CPU.
- RSS ready: VmRSS of the server once ready and idle, every bundled model loaded (students and teachers); target
  <= 700 MB.
- Soak: 8 streams at 15 fps for 5 minutes (20 s in the quick mode) after a warm-up at the same load; RSS sampled
  every second. Growth = (RSS at the end - RSS at the start of the soak) / RSS at the start; target <= 5 %. The
  peak (VmHWM) and the RSS slope over the second half are reported too.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import BenchContext, target
from benchmarks.e2e import frames_file, run_load, server_flags
from benchmarks.server import ServerProcess, rss_mib

NAME = "memory"


def settings(ctx: BenchContext) -> dict:
    if ctx.quick:
        return {"cold_starts": 1, "soak_s": 20.0, "warmup_s": 5.0, "streams": 8}
    return {"cold_starts": 3, "soak_s": 300.0, "warmup_s": 20.0, "streams": 8}


def run(ctx: BenchContext) -> dict:
    s = settings(ctx)
    frames_file(ctx)
    starts, ready_rss = [], []
    for i in range(s["cold_starts"] - 1):
        with ServerProcess(ctx, server_flags(ctx), label=f"cold-{i}") as server:
            starts.append(server.cold_start_s)
            time.sleep(0.5)
            ready_rss.append(rss_mib(server.pid)["rss"])
    with ServerProcess(ctx, server_flags(ctx), label="soak") as server:
        starts.append(server.cold_start_s)
        time.sleep(0.5)
        ready = rss_mib(server.pid)
        ready_rss.append(ready["rss"])
        models = [m["name"] for m in (server.readiness or {}).get("models", [])]
        ctx.log(f"  memory: warm-up {s['warmup_s']:g} s, soak {s['soak_s']:g} s at {s['streams']} streams")
        warm = run_load(ctx, server, s["streams"], s["warmup_s"], 0.0)
        start_rss = rss_mib(server.pid)["rss"]
        from benchmarks.server import Sampler

        sampler = Sampler(server.pid, every=1.0).start()
        soak = run_load(ctx, server, s["streams"], s["soak_s"], 0.0)
        usage = sampler.stop()
        end = rss_mib(server.pid)
    samples = np.asarray(sampler.samples)  # (n, 2): seconds, RSS MiB
    half = samples[len(samples) // 2 :]
    slope = float(np.polyfit(half[:, 0], half[:, 1], 1)[0]) * 60.0 if len(half) >= 3 else None
    growth = (end["rss"] - start_rss) / start_rss
    cold = float(np.median(starts))
    targets = [target("cold start to /readyz (median)", cold, 5.0, "s", note=f"runs: {[round(x, 2) for x in starts]}"),
               target("RSS with all bundled models loaded (ready, idle)", max(ready_rss), 700.0, "MiB",
                      note=f"models: {', '.join(models)}"),
               target(f"RSS growth over the {s['soak_s']:g} s soak", 100.0 * growth, 5.0, "%",
                      note=f"{start_rss:.0f} -> {end['rss']:.0f} MiB; peak {end['peak']:.0f} MiB"),
               target("peak RSS (VmHWM) through the soak", end["peak"], 700.0, "MiB")]
    return {"name": NAME, "cold_start_s": [round(x, 3) for x in starts], "cold_start_median_s": round(cold, 3),
            "rss_mib_ready": ready_rss, "models": models, "soak": {
                "streams": s["streams"], "seconds": s["soak_s"], "rss_mib_start": start_rss, "rss_mib_end": end["rss"],
                "rss_mib_peak": end["peak"], "growth_percent": round(100.0 * growth, 3),
                "slope_mib_per_min_second_half": None if slope is None else round(slope, 3),
                "rss_samples": [[float(t), float(r)] for t, r in samples[:: max(1, len(samples) // 120)]],
                "server": usage, "load": {k: soak[k] for k in ("sent", "answered", "dropped", "errors", "unanswered",
                                                              "rtt_ms")},
                "warmup_load": {k: warm[k] for k in ("sent", "answered", "dropped", "errors")}},
            "targets": targets, "settings": s}


def table(result: dict) -> list[str]:
    s = result["soak"]
    return [f"cold start to /readyz: {result['cold_start_s']} s (median {result['cold_start_median_s']} s)",
            f"RSS ready with {len(result['models'])} models: {result['rss_mib_ready']} MiB",
            f"soak {s['seconds']:g} s at {s['streams']} streams: RSS {s['rss_mib_start']:.0f} -> "
            f"{s['rss_mib_end']:.0f} MiB ({s['growth_percent']:+.2f} %), peak {s['rss_mib_peak']:.0f} MiB, slope over "
            f"the second half {s['slope_mib_per_min_second_half']} MiB/min; {s['load']['answered']} answered, "
            f"{s['load']['errors']} errors"]
