"""State shared by the worker processes of one `pkdot serve --workers N`: the stream limit and the metrics.

uvicorn's workers are separate processes on one port; the kernel hands each connection to one of them. Left alone,
each would enforce `max_streams` and count its metrics on its own: N times the limit, and a /metrics that shows
whichever worker answered. The parent `pkdot serve` makes a private folder and names it in the environment
(`PKDOT_WORKER_STATE_DIR`, and `PROMETHEUS_MULTIPROC_DIR` for prometheus_client) before the workers start:

- `SharedStreamCount`: each worker keeps its open-stream count in its own file there; admitting a stream sums the
  files of the workers still alive under an exclusive lock, so the limit holds across workers (a worker that died
  takes its count with it).
- metrics: prometheus_client's multiprocess mode writes every worker's values to memory-mapped files in the
  folder, and /metrics sums them (`Metrics.render`); the open-stream gauge adds up the live workers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

STATE_ENV = "PKDOT_WORKER_STATE_DIR"
PROMETHEUS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_worker_state() -> Path:
    """In the parent, before the workers start: a fresh private folder, named in the environment the workers
    inherit. Returns it (the caller removes it when the server stops)."""
    root = Path(tempfile.mkdtemp(prefix="pkdot-workers-"))
    (root / "metrics").mkdir()
    (root / "streams").mkdir()
    os.environ[STATE_ENV] = str(root)
    os.environ[PROMETHEUS_ENV] = str(root / "metrics")
    return root


def remove_worker_state(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for key in (STATE_ENV, PROMETHEUS_ENV):
        os.environ.pop(key, None)


def worker_state_dir() -> Path | None:
    """The shared folder when this process is one of several workers, else None."""
    value = os.environ.get(STATE_ENV)
    return Path(value) if value and Path(value).is_dir() else None


def _alive(pid: int) -> bool:
    """The process runs (a zombie that its parent has not reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)  # no /proc: ask the kernel
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, another user's
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class SharedStreamCount:
    """Open streams over every worker of the server: one count file per worker process, summed under a lock."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "streams"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.dir / ".lock"
        self._mine = self.dir / f"{os.getpid()}.count"
        self._write(0)

    def _write(self, value: int) -> None:
        tmp = self._mine.with_suffix(".tmp")
        tmp.write_text(str(value))
        tmp.replace(self._mine)

    def _read(self, path: Path) -> int:
        try:
            return int(path.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def total(self) -> int:
        """Open streams of the live workers."""
        total = 0
        for path in self.dir.glob("*.count"):
            pid = int(path.stem) if path.stem.isdigit() else -1
            if pid == os.getpid() or (pid > 0 and _alive(pid)):
                total += self._read(path)
        return total

    def try_add(self, limit: int) -> bool:
        """Count one more stream for this worker unless every worker together has `limit` open."""
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.total() >= limit:
                return False
            self._write(self._read(self._mine) + 1)
            return True

    def remove(self) -> None:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._write(max(self._read(self._mine) - 1, 0))

    def mark_ready(self) -> None:
        """This worker has loaded its models and serves."""
        (self.dir / f"{os.getpid()}.ready").touch()

    def ready_workers(self) -> int:
        """Workers that are alive and have loaded their models."""
        return sum(1 for p in self.dir.glob("*.ready") if p.stem.isdigit() and _alive(int(p.stem)))

    def close(self) -> None:
        self._mine.unlink(missing_ok=True)
        (self.dir / f"{os.getpid()}.ready").unlink(missing_ok=True)


def forget_dead_workers(metrics_dir: Path) -> None:
    """prometheus_client's live gauges of worker processes that are gone (killed, not stopped): out of the sum."""
    from prometheus_client import multiprocess

    pids = {int(p.stem.rsplit("_", 1)[-1]) for p in metrics_dir.glob("gauge_live*_*.db")
            if p.stem.rsplit("_", 1)[-1].isdigit()}
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, str(metrics_dir))
