"""The output folder of a synthetic dataset and the summary of what was written."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from training.errors import ConfigError


@dataclass(frozen=True)
class SynthSummary:
    """What a `write_*` call produced."""

    dataset: str  # "biovid" or "affwild2"
    root: Path
    subjects: int  # distinct synthetic people
    items: int  # BioVid samples, or Aff-Wild2 annotation files (a two-person video has two)
    videos: int
    frames: int  # video frames written, all videos together
    bytes: int  # size on disk of the dataset
    seconds: float  # generation wall time

    def line(self) -> str:
        what = "samples" if self.dataset == "biovid" else "annotated tracks"
        size = f"{self.bytes / 1e6:.1f} MB" if self.bytes >= 100_000 else f"{self.bytes / 1e3:.0f} kB"
        return (f"{self.dataset}: {self.subjects} subjects, {self.items} {what}, {self.videos} videos, "
                f"{self.frames} frames, {size} in {self.root} ({self.seconds:.1f} s)")


def prepare_output_dir(out: str | os.PathLike, owned: Sequence[str], force: bool) -> Path:
    """Create `out`, or check that it is empty. With `force`, only the layout's own entries (`owned`, e.g.
    "samples.csv", "video") are deleted first; anything else in the folder is left alone."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not force:
            raise ConfigError(f"--out {root} is not empty; choose an empty or new folder, or pass --force to replace "
                              f"the synthetic dataset entries ({', '.join(owned)}) in it")
        for name in owned:
            path = root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    return root


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """A frame size (width, height) H.264 can take and a face detector can work with."""
    w, h = (int(v) for v in size)
    if w % 2 or h % 2 or min(w, h) < 160 or max(w, h) > 3840:
        raise ConfigError(f"frame size {w}x{h}: both sides must be even, at least 160 and at most 3840 pixels "
                          f"(the face is 0.45 x the shorter side wide)")
    return w, h


def disk_usage(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run_jobs(fn: Callable[[Any], Any], jobs: Iterable[Any], workers: int, progress: Callable[[Any], None]) -> list:
    """fn over jobs, in `workers` processes (1: in this process); `progress(result)` after each job, in any order.
    Results come back in job order."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(fn(job))
            progress(results[-1])
        return results
    # spawn, not fork: the parent may hold threads (MediaPipe, BLAS) that a forked child would inherit half-dead
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, job) for job in jobs]
        for future in futures:
            progress(future.result())
        return [f.result() for f in futures]
