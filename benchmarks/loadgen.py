"""Load generator: N real WebSocket clients streaming JPEG frames at a fixed rate to one server, in its own process.

    python -m benchmarks.loadgen --url ws://127.0.0.1:PORT/ws/stream?task=pain --streams 16 --fps 15 \
        --seconds 30 --frames FRAMES.npz --out RESULT.json

Each stream is one connection (no compression, as `pkdot stream`) that sends frame k at start + offset + k/fps
whatever the answers, like a webcam: a server that falls behind drops frames (the newest wins), it never slows
the camera. Streams start at offsets spread over one frame period. The round-trip time of a frame is from just
before its send to the arrival of its answer. At the end every stream stops sending, waits (bounded) for the
answer to its last frame, and closes, so that every frame sent is accounted for:

    sent = answered + dropped (reported by the server, and seen as gaps in the answered seq numbers) + errors
           + unanswered (in flight when the wait ran out: should be 0)

Only frames sent after `--warmup` seconds count in the latency percentiles; every frame counts in the totals.
Bounded: at most 256 streams, at most 15 minutes, loopback addresses unless --remote (`pkdot bench --url`: a server
of one's own elsewhere; ws:// or wss://).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

MAX_STREAMS = 256
MAX_SECONDS = 900.0
CDF_POINTS = np.linspace(0, 100, 201)  # percentiles kept for the latency CDF plot


@dataclass
class StreamLog:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    faces: int = 0
    server_dropped: int = 0  # the `dropped` field of the last answer
    gaps: int = 0  # seq numbers never answered before a later one was
    late_sends: int = 0  # sends more than one frame period behind schedule (the client itself lagging)
    rtt_ms: list[float] = field(default_factory=list)  # answered frames sent after the warm-up
    server_ms: list[float] = field(default_factory=list)  # the server's own timings_ms.total for those
    stages: dict[str, float] = field(default_factory=dict)  # sums of the server's timings_ms per stage
    closed: str | None = None  # how the connection ended if not by this side
    connect_ms: float | None = None


async def run_stream(url: str, frames: list[bytes], fps: float, seconds: float, warmup: float, offset: float,
                     start: float, log: StreamLog) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    sent_at: dict[int, float] = {}  # seq -> perf_counter() just before sending, until answered or passed over
    last_answered = -1
    answer = asyncio.Event()
    closing = False
    t0 = time.perf_counter()
    try:
        ws = await connect(url, compression=None, max_size=1 << 22, open_timeout=30, close_timeout=5)
    except Exception as exc:  # any failure to connect is a result, reported
        log.closed = f"connect failed: {type(exc).__name__}: {exc}"
        return
    log.connect_ms = (time.perf_counter() - t0) * 1000.0

    async def receive() -> None:
        nonlocal last_answered
        try:
            async for message in ws:
                now = time.perf_counter()
                msg = json.loads(message)
                kind, seq = msg.get("type"), msg.get("seq")
                if kind not in ("result", "error") or not isinstance(seq, int):
                    continue
                log.gaps += max(0, seq - last_answered - 1)  # answers come in order: skipped seqs were dropped
                last_answered = max(last_answered, seq)
                t_sent = sent_at.pop(seq, None)
                for s in [s for s in sent_at if s < seq]:
                    del sent_at[s]
                if kind == "error":
                    log.errors += 1
                else:
                    log.answered += 1
                    log.faces += bool(msg.get("face_detected"))
                    log.server_dropped = int(msg.get("dropped") or 0)
                    timings = msg.get("timings_ms") or {}
                    for k, v in timings.items():
                        log.stages[k] = log.stages.get(k, 0.0) + float(v)
                    if t_sent is not None and t_sent - start >= warmup:
                        log.rtt_ms.append((now - t_sent) * 1000.0)
                        log.server_ms.append(float(timings.get("total", float("nan"))))
                answer.set()
        except ConnectionClosed as exc:
            if not closing:
                log.closed = f"closed by the server: {exc.rcvd.code if exc.rcvd else 1006}"
        finally:
            answer.set()

    receiver = asyncio.create_task(receive())
    period = 1.0 / fps
    try:
        for k in range(int(seconds * fps)):
            delay = start + offset + k * period - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -period:
                log.late_sends += 1
            if receiver.done():
                break
            sent_at[k] = time.perf_counter()
            await ws.send(frames[k % len(frames)])
            log.sent += 1
        deadline = time.perf_counter() + 10.0  # the answer to the last frame settles every frame before it
        while last_answered < log.sent - 1 and not receiver.done() and time.perf_counter() < deadline:
            answer.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answer.wait(), timeout=deadline - time.perf_counter())
    except ConnectionClosed as exc:
        log.closed = f"closed by the server while sending: {exc.rcvd.code if exc.rcvd else 1006}"
    finally:
        closing = True
        with contextlib.suppress(Exception):
            await ws.close(1000, "end of benchmark")
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver


def summarise(logs: list[StreamLog], seconds: float, wall: float, fps: float) -> dict:
    rtt = np.asarray([x for s in logs for x in s.rtt_ms])
    server = np.asarray([x for s in logs for x in s.server_ms])
    sent = sum(s.sent for s in logs)
    answered = sum(s.answered for s in logs)
    errors = sum(s.errors for s in logs)
    dropped = sum(s.server_dropped for s in logs)
    gaps = sum(s.gaps for s in logs)
    unanswered = sent - answered - errors - dropped
    stage_sums: dict[str, float] = {}
    for s in logs:
        for k, v in s.stages.items():
            stage_sums[k] = stage_sums.get(k, 0.0) + v

    def pct(v: np.ndarray) -> dict:
        if not v.size:
            return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
                "mean": round(float(v.mean()), 3), "max": round(float(v.max()), 3)}

    return {
        "streams": len(logs), "fps_per_stream": fps, "seconds": seconds, "wall_s": round(wall, 2),
        "offered_fps": round(len(logs) * fps, 1), "sent": sent, "answered": answered, "dropped": dropped,
        "dropped_seen_as_gaps": gaps, "errors": errors, "unanswered": unanswered,
        "accounted": unanswered == 0 and dropped == gaps,
        "answered_per_s": round(answered / seconds, 2),
        "answered_fraction": round(answered / sent, 4) if sent else None,
        "faces_fraction": round(sum(s.faces for s in logs) / answered, 4) if answered else None,
        "rtt_ms": pct(rtt), "server_total_ms": pct(server[np.isfinite(server)] if server.size else server),
        "server_stage_mean_ms": {k: round(v / answered, 3) for k, v in sorted(stage_sums.items())} if answered else {},
        "rtt_cdf_ms": [round(float(x), 3) for x in np.percentile(rtt, CDF_POINTS)] if rtt.size else [],
        "late_sends": sum(s.late_sends for s in logs),
        "connections_failed_or_closed": [s.closed for s in logs if s.closed],
        "connect_ms": pct(np.asarray([s.connect_ms for s in logs if s.connect_ms is not None])),
    }


async def main_async(args: argparse.Namespace, frames: list[bytes]) -> dict:
    logs = [StreamLog() for _ in range(args.streams)]
    start = time.perf_counter() + 0.5 + 0.02 * args.streams  # time for every stream to connect first
    period = 1.0 / args.fps
    t0 = time.perf_counter()
    await asyncio.gather(*(run_stream(args.url, frames[(i * 37) % len(frames):] + frames[:(i * 37) % len(frames)],
                                      args.fps, args.seconds, args.warmup, period * i / args.streams, start, log)
                           for i, log in enumerate(logs)))
    return summarise(logs, args.seconds, time.perf_counter() - t0, args.fps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/ws/stream?task=pain")
    p.add_argument("--streams", type=int, required=True)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--seconds", type=float, required=True, help="sending time per stream")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds left out of the latency percentiles")
    p.add_argument("--frames", required=True, help="npz of JPEG frames (benchmarks.video)")
    p.add_argument("--out", required=True, help="JSON summary to write")
    p.add_argument("--remote", action="store_true", help="allow a server that is not on this machine")
    args = p.parse_args(argv)
    url = urlparse(args.url)
    if url.scheme not in ("ws", "wss") or not url.hostname:
        p.error(f"--url must be a ws:// or wss:// URL, not {args.url!r}")
    if url.hostname not in ("127.0.0.1", "localhost", "::1") and not args.remote:
        p.error("the load generator targets loopback servers unless --remote is given")
    if not 1 <= args.streams <= MAX_STREAMS or not 0 < args.seconds <= MAX_SECONDS or not 0 < args.fps <= 120:
        p.error(f"streams must be 1..{MAX_STREAMS}, seconds 0..{MAX_SECONDS:g}, fps 0..120")
    from benchmarks.video import read_frames

    frames = read_frames(Path(args.frames))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(main_async(args, frames))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["client_cpu_cores"] = round(result["client_cpu_s"] / max(result["wall_s"], 1e-9), 3)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
