"""A `pkdot serve` process under test: start it on a free loopback port, time its cold start to /readyz, sample its
CPU time and resident memory from /proc, stop it.

The server runs exactly as a user starts it (`python -m pkdot serve ...`, one process), with the flags a
benchmark asks for; its log goes to a file in the cache folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.common import ROOT, BenchContext

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
READY_TIMEOUT_S = 180.0  # a cluster server starts Ray and its replicas first


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields from the 3rd (state) on


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's worker processes, a cluster's Ray workers), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))  # ppid
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += parents.get(p, [])
    return tree


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU time of a process (all its threads) and of its ended children, from /proc/PID/stat; with
    `children`, plus that of every descendant process alive now."""
    total = 0.0
    for p in process_tree(pid) if children else [pid]:
        try:
            fields = _stat(p)
        except OSError:  # ended meanwhile
            continue
        # utime, stime, and cutime, cstime: the CPU of children that ended (and were reaped) since they started
        total += sum(int(f) for f in fields[11:15]) / CLOCK_TICKS  # fields 14-17 of stat
    return total


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory now (VmRSS) and its peak (VmHWM), MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out["rss" if line.startswith("VmRSS") else "peak"] = round(int(line.split()[1]) / 1024, 1)
    return out


def tree_rss_mib(pid: int) -> float:
    """Resident memory of the process and its descendants (several workers: their sum), MiB."""
    total = 0.0
    for p in process_tree(pid):
        try:
            total += rss_mib(p).get("rss", 0.0)
        except OSError:
            continue
    return round(total, 1)


class Sampler:
    """CPU and RSS of a process over an interval: start(), then stop() -> summary; RSS sampled every `every` s."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self._stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (seconds since start, RSS MiB)

    def start(self) -> Sampler:
        self._t0, self._cpu0 = time.perf_counter(), cpu_seconds(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((round(time.perf_counter() - self._t0, 2), tree_rss_mib(self.pid)))
            except (OSError, KeyError):
                return
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._t0
        cpu = cpu_seconds(self.pid) - self._cpu0
        rss = [r for _, r in self.samples] or [tree_rss_mib(self.pid)]
        return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cpu_cores": round(cpu / wall, 3),
                "rss_mib_start": rss[0], "rss_mib_end": rss[-1], "rss_mib_max": max(rss)}


def http_json(url: str, timeout: float = 5.0) -> tuple[int | None, dict | None]:
    """(status, JSON body) of a GET; (None, None) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return None, None


def http_text(url: str, timeout: float = 5.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return ""


class ServerProcess:
    """`with ServerProcess(ctx, extra_flags) as server:` a ready server at server.url (http://127.0.0.1:PORT)."""

    def __init__(self, ctx: BenchContext, flags: list[str] | None = None, env: dict[str, str] | None = None,
                 label: str = "server", stop_timeout_s: float = 20.0) -> None:
        self.ctx, self.flags, self.env, self.label = ctx, list(flags or []), dict(env or {}), label
        self.stop_timeout_s = stop_timeout_s  # a cluster server deletes its application and stops Ray first
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.cold_start_s: float | None = None
        self.readiness: dict | None = None
        self.log_path = ctx.cache_dir / "logs" / f"{label}-{self.port}.log"
        self.workers = int(self.flags[self.flags.index("--workers") + 1]) if "--workers" in self.flags else 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pkdot", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--models-dir", str(self.ctx.models_dir), "--providers", self.ctx.providers, "--log-format", "text",
                "--log-level", "warning", *self.flags]

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pkdot serve exited with {self.proc.returncode} before it was ready; see "
                                   f"{self.log_path}:\n{self.log_path.read_text()[-2000:]}")
            if time.perf_counter() - t0 > READY_TIMEOUT_S:
                self.stop()
                raise RuntimeError(f"pkdot serve was not ready after {READY_TIMEOUT_S:g} s; see {self.log_path}")
            status, body = self.get("/readyz", timeout=1.0)
            # with several workers, one may answer while another still loads its models: wait for every one
            if status == 200 and ((body or {}).get("workers_ready") or 1) >= self.workers:
                self.cold_start_s = time.perf_counter() - t0
                self.readiness = body
                return self
            time.sleep(0.02)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int | None, dict | None]:
        return http_json(self.url + path, timeout)

    def metrics_text(self) -> str:
        return http_text(self.url + "/metrics")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RemoteServer:
    """A server started elsewhere (`pkdot bench --url`): measured from outside only, so no CPU or memory figures."""

    pid = None
    cold_start_s = None

    def __init__(self, url: str, label: str = "remote") -> None:
        self.url, self.label = url.rstrip("/"), label
        status, body = http_json(self.url + "/readyz", timeout=10.0)
        if status != 200:
            raise RuntimeError(f"{self.url}/readyz answered {status or 'nothing'}: the server is not ready (or not a "
                               "PKDOT server)")
        self.readiness = body

    def metrics_text(self) -> str:
        return http_text(self.url + "/metrics")

    def __enter__(self) -> RemoteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def batch_counts(metrics_text: str) -> dict[str, tuple[float, float]]:
    """{"model/graph": (rows, calls)} from the server's pkdot_batch_size histogram (Prometheus text)."""
    out: dict[str, list[float]] = {}
    for line in metrics_text.splitlines():
        if not line.startswith(("pkdot_batch_size_sum{", "pkdot_batch_size_count{")):
            continue
        labels, value = line.rsplit(" ", 1)
        fields = dict(part.split("=", 1) for part in labels[labels.index("{") + 1 : labels.rindex("}")].split(","))
        key = f"{fields['model'].strip(chr(34))}/{fields['graph'].strip(chr(34))}"
        slot = 0 if line.startswith("pkdot_batch_size_sum") else 1
        out.setdefault(key, [0.0, 0.0])[slot] = float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def mean_batch(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean rows per ONNX Runtime call of each graph between two batch_counts readings (graphs that ran)."""
    out = {}
    for k, (rows, calls) in after.items():
        r0, c0 = before.get(k, (0.0, 0.0))
        if calls > c0:
            out[k] = round((rows - r0) / (calls - c0), 3)
    return out
