"""Where a loaded server spends its CPU: a py-spy flame graph of `pkdot serve` under N concurrent 15 fps streams.

    python -m benchmarks.profile --streams 32 --seconds 12 --out docs/profile/streams-32.svg [-- SERVE FLAGS]

The server starts as in `pkdot bench` (the bundled models, loopback), the load generator streams the benchmark
video, and py-spy samples every thread of the server (and its worker processes) at 100 Hz, native frames included
(`--native`: ONNX Runtime, OpenCV and MediaPipe show by name; each sample pauses the process briefly): first for
the SVG, then for `<out>.collapsed` (the collapsed stacks), one after the other inside one steady load.
`<out>.json` holds the share of samples per activity (decode, face, inference, WebSocket I/O, ...) with the load's
figures (answers per second, server CPU per answered frame), so that a before/after comparison is one diff.
py-spy's own sampling runs on the same cores: compare profiles taken the same way, not their absolute figures with
`pkdot bench`. Needs py-spy (the dev extra) and permission to trace (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import ROOT, BenchContext
from benchmarks.e2e import frames_file, run_load, server_flags
from benchmarks.server import ServerProcess

# what a sample is spent on: the first of these found in its stack (innermost first) names it
ACTIVITIES = (
    ("decode", ("decode_image", "imdecode")),
    ("face: detect", ("largest", "detect_for_video", "_detect")),
    ("face: track", ("_track", "matchTemplate")),
    ("crop + normalise", ("preprocess", "crop_face", "to_model_input")),
    ("inference (ONNX Runtime)", ("InferenceSession.run", "_run_graph", "run_with_iobinding", "onnxruntime")),
    ("JSON + result", ("orjson", "model_dump", "dumps", "StreamResult", "postprocess", "smooth", "mean_prediction")),
    ("metrics", ("prometheus_client",)),
    ("WebSocket protocol + I/O", ("websockets", "uvicorn/protocols", "send_text", "receive", "_write", "sock_")),
    ("event loop + thread hand-offs", ("asyncio", "base_events", "concurrent/futures", "threading", "uvloop")),
)


WAITS = ("pthread_cond_timedwait", "pthread_cond_wait", "PyThread_acquire_lock_timed", "FutexWaiter", "epoll_wait",
         "sem_timedwait", "sem_wait", "futex_wait", "__futex", "nanosleep", "poll (")


def activity(stack: str) -> str:
    """What one sampled stack is doing: "waiting for the GIL", "idle" (a thread blocked until work comes), or the
    first activity of ACTIVITIES found from the innermost frame outwards ("other" when none is)."""
    frames = stack.split(";")[::-1]  # innermost first
    if any("take_gil" in f for f in frames[:6]):
        return "waiting for the GIL"
    if any(w in f for f in frames[:4] for w in WAITS):
        return "idle"
    for frame in frames:
        for name, needles in ACTIVITIES:
            if any(n in frame for n in needles):
                return name
    return "other"


def shares(collapsed: Path) -> dict[str, float]:
    """Share (%) of the busy samples per activity (idle threads left out), from py-spy's collapsed output (`stack
    count` per line); "idle" is reported as its share of every sample."""
    counts: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[activity(stack)] += int(n)
    everything = sum(counts.values()) or 1
    idle = counts.pop("idle", 0)
    busy = sum(counts.values()) or 1
    out = {k: round(100.0 * v / busy, 1) for k, v in counts.most_common()}
    out["idle (share of every sample, not in the sum)"] = round(100.0 * idle / everything, 1)
    return out


def record(pid: int, out: Path, seconds: float, fmt: str) -> subprocess.Popen:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "100", "--duration", str(int(seconds)),
                             "--subprocesses", "--native", "--format", fmt, "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--seconds", type=float, default=12.0, help="seconds of each of the two py-spy recordings")
    p.add_argument("--out", type=Path, required=True, help="flame graph SVG to write")
    p.add_argument("serve_flags", nargs="*", help="extra `pkdot serve` flags (after --)")
    args = p.parse_args(argv)
    ctx = BenchContext(log=lambda m: print(m, file=sys.stderr))
    frames_file(ctx)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    collapsed = args.out.with_suffix(".collapsed")
    sampled = max(int(args.seconds), 3)
    with ServerProcess(ctx, server_flags(ctx) + args.serve_flags, label="profile") as server:
        load: dict = {}
        seconds = 2 * sampled + 20.0  # py-spy's own start-up (native unwinding) takes a few seconds per recording

        def generate() -> None:
            try:
                load.update(run_load(ctx, server, args.streams, seconds, 2.0))
            except Exception as exc:  # noqa: BLE001 - reported after the join
                load["error"] = exc

        worker = threading.Thread(target=generate)
        worker.start()
        time.sleep(4.0)  # connections up, warm
        problems = []
        for out, fmt in ((args.out, "flamegraph"), (collapsed, "raw")):
            spy = record(server.pid, out, sampled, fmt)
            _, err = spy.communicate()
            if spy.returncode != 0:
                problems.append(err)
        worker.join()
    if "error" in load:
        raise load["error"]
    if args.out.is_file():  # the SVG names the command: leave out where this machine keeps things
        svg = args.out.read_text()
        for prefix in (str(Path(sys.executable).parent) + "/", str(ROOT) + "/"):
            svg = svg.replace(prefix, "")
        args.out.write_text(svg)
    if problems:
        print(f"py-spy failed: {problems[0][-1000:]}", file=sys.stderr)
        return 1
    summary = {"streams": args.streams, "serve_flags": args.serve_flags, "answered_per_s": load["answered_per_s"],
               "rtt_p95_ms": load["rtt_ms"]["p95"], "server_cpu_ms_per_answer": load["server_cpu_ms_per_answer"],
               "server_cpu_cores": load["server"]["cpu_cores"], "activity_share_percent": shares(collapsed)}
    text = json.dumps(summary, indent=1)
    args.out.with_suffix(".json").write_text(text + "\n")
    print(text)
    print(f"flame graph: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
