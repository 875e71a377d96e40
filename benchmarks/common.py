"""What every benchmark shares: the run context, timing loops and their statistics, targets, the machine's identity.

Timing rules (they apply to every figure `pkdot bench` reports):
- warm-up calls first (they are not counted), then at least `min_calls` timed calls and at least `min_seconds` of
  them, at most `max_calls`;
- latency is wall time around one blocking call (`time.perf_counter`), reported as median and p95 in ms;
- throughput is items (frames, clips) per second at the median latency: batch / median;
- ratios compare figures measured in the same run, never absolute times across runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from training.jsonutil import to_jsonable

ROOT = Path(__file__).resolve().parent.parent  # the repository root
PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "torch", "mediapipe", "opencv-contrib-python", "fastapi",
            "uvicorn", "websockets", "pydantic")


@dataclass
class BenchContext:
    """Options of one `pkdot bench` run, handed to every benchmark."""

    quick: bool = False
    providers: str = "cpu"  # cpu | cuda
    threads: int = 0  # ONNX Runtime intra-op and torch threads; 0: one per core
    models_dir: Path = ROOT / "models"
    runs_dir: Path = ROOT / "runs" / "models"  # training runs of the bundled models (config.json + best.pt)
    cache_dir: Path = ROOT / "benchmarks" / ".cache"  # generated video, int8 graphs, exported heads
    out_dir: Path = ROOT / "benchmarks" / "results"
    training_log: Path | None = None  # output of `time bash scripts/make-models.sh`
    video: Path | None = None  # a face video to stream instead of the generated one
    url: str | None = None  # `pkdot bench --url`: load a server running elsewhere instead of starting one
    log: Callable[[str], None] = print
    extra: dict = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def cuda(self) -> bool:
        return self.providers == "cuda"

    @property
    def cores(self) -> int:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    @property
    def n_threads(self) -> int:
        return self.threads or self.cores

    def ort_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.cuda else ["CPUExecutionProvider"]


class Skipped(Exception):
    """A benchmark that cannot run here (its inputs are missing); the reason is recorded, the run goes on."""


# -- timing ----------------------------------------------------------------------------------------------------------


def time_calls(fn: Callable[[], object], *, warmup: int = 3, min_calls: int = 10, min_seconds: float = 0.5,
               max_calls: int = 10_000, sync: Callable[[], None] | None = None) -> np.ndarray:
    """Seconds per call of `fn`, after `warmup` untimed calls. `sync` (e.g. torch.cuda.synchronize) runs after each
    call, inside the timed region, so asynchronous GPU work is counted."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def time_interleaved(fns: dict[str, Callable[[], object]], *, warmup: int = 3, min_calls: int = 10,
                     min_seconds: float = 0.5, max_calls: int = 10_000,
                     sync: dict[str, Callable[[], None]] | None = None) -> dict[str, np.ndarray]:
    """Seconds per call of several functions, called in turn (a, b, c, a, b, c, ...), so that a change of machine
    load during the measurement hits them all alike: their ratios are what this is for."""
    sync = sync or {}
    for _ in range(warmup):
        for name, fn in fns.items():
            fn()
            if name in sync:
                sync[name]()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_calls and (rounds < min_calls or time.perf_counter() - start < min_seconds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if name in sync:
                sync[name]()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: np.asarray(t) for name, t in times.items()}


def latency_stats(seconds: np.ndarray | list[float], items: int = 1) -> dict:
    """median / p95 / p99 / mean in ms, the number of calls, and items per second at the median."""
    s = np.asarray(seconds, dtype=np.float64)
    if s.size == 0:
        return {"calls": 0, "median_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "per_s": None}
    med = float(np.median(s))
    p95, p99 = np.percentile(s, [95, 99])
    return {"calls": int(s.size), "median_ms": round(med * 1e3, 4), "p95_ms": round(float(p95) * 1e3, 4),
            "p99_ms": round(float(p99) * 1e3, 4), "mean_ms": round(float(s.mean()) * 1e3, 4),
            "per_s": round(items / med, 2) if med > 0 else None}


def percentiles_ms(values_ms: list[float] | np.ndarray) -> dict:
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "mean": round(float(v.mean()), 3), "max": round(float(v.max()), 3)}


# -- targets -----------------------------------------------------------------------------------------------------------


def target(name: str, value: float | None, limit: float, unit: str = "", *, at_most: bool = True,
           note: str = "") -> dict:
    """One target of the issue: met when value <= limit (or >= with at_most=False); None when not measured."""
    met = None if value is None else (value <= limit if at_most else value >= limit)
    return {"target": name, "value": None if value is None else round(float(value), 4), "limit": limit,
            "unit": unit, "comparison": "<=" if at_most else ">=", "met": met, "note": note}


# -- the machine ------------------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        else:
            name = platform.processor() or platform.machine()
        info = Path("/proc/cpuinfo").read_text()
        family = next((ln.split(":")[1].strip() for ln in info.splitlines() if ln.startswith("cpu family")), "?")
        model = next((ln.split(":")[1].strip() for ln in info.splitlines() if ln.startswith("model\t")), "?")
        flags = next((ln.split(":")[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
        simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
        return f"{name} (family {family}, model {model}; {' '.join(simd) or 'no AVX2'})"
    except OSError:
        return platform.processor() or platform.machine()


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[p] = version(p)
    return out


def _git() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(git("status", "--porcelain"))}


def machine_info(ctx: BenchContext) -> dict:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info = {"cpu": _cpu_model(), "cores": ctx.cores, "memory_gib": mem, "os": platform.platform(),
            "load_average": load_average(), "versions": _versions(), "git": _git(), "providers": ctx.providers,
            "threads": ctx.n_threads}
    if ctx.cuda:
        info["gpu"] = gpu_name()
    return info


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# -- files ------------------------------------------------------------------------------------------------------------


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=to_jsonable) + "\n")


def rel(path: Path) -> str:
    """A path relative to the repository root where it lies inside it (for the results files)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
