"""Detect and crop the faces of every sample of a dataset into a face-crop cache (`pkdot prepare`).

Runs the one shared preprocessing path (`pkdot_contract.preprocessing`): MediaPipe face detection, the largest face,
a square crop with the configured margin. Resumable: samples already in the cache are never redone. The dataset
root is only read, never written (it may be read-only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

DATASETS = ("biovid", "affwild2")


@dataclass(frozen=True)
class PrepareItem:
    """One sample to crop: frames come from `cropped_aligned` JPEGs when given, otherwise from the video."""

    key: str  # cache key (see training.data.cache)
    video: Path | None = None
    aligned_dir: Path | None = None  # Aff-Wild2 cropped_aligned/<name>/ (1-based %05d.jpg)
    region: str = "full"  # "full", or "left"/"right": the half of the frame where this person is


@dataclass
class PrepareSummary:
    samples: int = 0  # samples in the dataset
    done_before: int = 0  # already in the cache (resumed)
    prepared: int = 0  # cropped in this run
    frames: int = 0  # frames cropped in this run
    faces: int = 0  # of which a face was detected in
    without_face: list[str] = field(default_factory=list)  # samples with no face in any frame
    broken: dict[str, str] = field(default_factory=dict)  # samples skipped: key -> problem
    seconds: float = 0.0

    def lines(self) -> list[str]:
        rate = self.faces / self.frames if self.frames else 0.0
        out = [
            f"samples: {self.samples} ({self.done_before} already cached, {self.prepared} prepared now, "
            f"{len(self.broken)} skipped as broken)",
            f"frames: {self.frames} cropped, face found in {self.faces} ({rate:.1%})",
            f"samples without a face: {len(self.without_face)}",
            f"time: {self.seconds:.1f} s",
        ]
        out += [f"  skipped {k}: {why}" for k, why in list(self.broken.items())[:20]]
        return out


# -- one sample ------------------------------------------------------------------------------------------------------

_worker_detector = None


def _detector(min_score: float):
    global _worker_detector
    if _worker_detector is None:
        from pkdot_contract.preprocessing.face import FaceDetector

        _worker_detector = FaceDetector(min_score=min_score)
    return _worker_detector


def _centre_box(frame_shape: tuple[int, int]):
    from pkdot_contract.preprocessing.face import FaceBox

    h, w = frame_shape
    side = min(h, w) * 0.6
    return FaceBox((w - side) / 2, (h - side) / 2, side, side, 0.0)


def _crop_video(item: PrepareItem, crop: dict, min_score: float, every: int) -> dict:
    """Crops frames as they are decoded (memory stays bounded on long videos). A frame without a face reuses the
    previous face box; frames before the first face wait for it; with no face at all, a centred square is used."""
    from pkdot_contract.preprocessing.crop import CropSpec, crop_face
    from pkdot_contract.preprocessing.face import FaceBox
    from pkdot_contract.preprocessing.media import MediaError, iter_video_frames, video_info

    spec = CropSpec.from_dict(crop)
    detector = _detector(min_score)
    crops, boxes, scores, has_face, index = [], [], [], [], []
    waiting: list[np.ndarray] = []  # frames before the first detected face
    last = None
    try:
        fps = video_info(item.video).fps
        for i, rgb in enumerate(iter_video_frames(item.video)):
            if i % every:
                continue
            h, w = rgb.shape[:2]
            x0 = w // 2 if item.region == "right" else 0
            x1 = w // 2 if item.region == "left" else w
            box = detector.largest(np.ascontiguousarray(rgb[:, x0:x1]))
            if box is not None and x0:
                box = FaceBox(box.x + x0, box.y, box.w, box.h, box.score)
            index.append(i)
            has_face.append(box is not None)
            scores.append(box.score if box is not None else 0.0)
            if box is not None:
                for frame in waiting:  # the first face also stands for the frames before it
                    crops.append(crop_face(frame, box, spec))
                    boxes.append(box.as_list())
                waiting.clear()
                last = box
            if last is None:
                waiting.append(rgb)
                continue
            crops.append(crop_face(rgb, last, spec))
            boxes.append(last.as_list())
    except MediaError as exc:
        raise DatasetError(f"{item.video}: {exc}") from None
    if not index:
        raise DatasetError(f"{item.video}: the video has no frames")
    if waiting:  # no face anywhere
        box = _centre_box(waiting[0].shape[:2])
        crops += [crop_face(f, box, spec) for f in waiting]
        boxes += [box.as_list()] * len(waiting)
    return {
        "crops": np.stack(crops), "frame_index": np.asarray(index), "fps": fps,
        "has_face": np.asarray(has_face), "boxes": np.asarray(boxes, np.float32),
        "scores": np.asarray(scores, np.float32),
    }


def _crop_aligned(item: PrepareItem, crop: dict) -> dict:
    import cv2

    from pkdot_contract.preprocessing.crop import CropSpec

    spec = CropSpec.from_dict(crop)
    files = sorted(item.aligned_dir.glob("*.jpg"))
    crops, index = [], []
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None or not f.stem.isdigit():
            log.warning("%s: not a readable cropped_aligned frame, ignored", f)
            continue
        crops.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (spec.size, spec.size),
                                interpolation=cv2.INTER_AREA))
        index.append(int(f.stem) - 1)  # 00001.jpg is frame 0
    if not crops:
        raise DatasetError(f"{item.aligned_dir}: no readable cropped_aligned frames")
    n = len(crops)
    return {"crops": np.stack(crops), "frame_index": np.asarray(index), "fps": 0.0, "has_face": np.ones(n, bool),
            "boxes": np.tile(np.array([0, 0, spec.size, spec.size], np.float32), (n, 1)),
            "scores": np.ones(n, np.float32)}


def prepare_one(item: PrepareItem, crop: dict, min_score: float, every: int) -> tuple[str, dict | None, str | None]:
    """Crop one sample. Returns (key, arrays, None) or (key, None, problem) for a broken sample."""
    try:
        if item.aligned_dir is not None:
            return item.key, _crop_aligned(item, crop), None
        return item.key, _crop_video(item, crop, min_score, every), None
    except DatasetError as exc:
        return item.key, None, str(exc)


# -- a whole dataset -------------------------------------------------------------------------------------------------


def dataset_items(dataset: str, root: Path, strict: bool = False) -> list[PrepareItem]:
    """Every sample of the dataset root, as prepare items."""
    if dataset == "biovid":
        from training.data.biovid import read_samples_csv

        return [PrepareItem(key=f"{s.subject_name}/{s.sample_name}", video=s.video_path)
                for s in read_samples_csv(root)]
    from training.data.affwild2 import index_affwild2

    items = []
    for entry in index_affwild2(root, strict=strict):
        aligned = root / "cropped_aligned" / entry.name
        region = entry.name.rsplit("_", 1)[1] if entry.name.endswith(("_left", "_right")) else "full"
        items.append(PrepareItem(key=entry.name, video=entry.video_path,
                                 aligned_dir=aligned if aligned.is_dir() else None, region=region))
    return items


def prepare(dataset: str, root: str | os.PathLike, out: str | os.PathLike, *, crop: dict | None = None,
            min_score: float = 0.5, every: int = 1, workers: int = 1, strict: bool = False,
            progress: bool = True) -> PrepareSummary:
    """Crop every sample of `root` into the cache at `out`; returns the summary (also saved as summary.json)."""
    from tqdm import tqdm

    from pkdot_contract import __version__
    from pkdot_contract.preprocessing.crop import CropSpec
    from pkdot_contract.preprocessing.face import DEFAULT_DETECTOR
    from training.data.cache import CropCache

    root, out = Path(root).resolve(), Path(out).resolve()
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder")
    if out == root or root in out.parents:
        raise ConfigError(f"--out {out} is inside the dataset root {root}; the dataset root is never written to")
    if every < 1 or workers < 1:
        raise ConfigError("--every and --workers must be at least 1")
    spec = CropSpec.from_dict(crop or {})
    meta = {"dataset": dataset, "root": str(root), "crop": spec.to_dict(),
            "detector": {"name": DEFAULT_DETECTOR, "min_score": min_score},
            "every": every, "pkdot_version": __version__}
    cache = CropCache(out)
    if cache.meta_path.is_file():
        old = cache.read_meta()
        same = {k: old.get(k) for k in ("dataset", "crop", "detector", "every")}
        if same != {k: meta[k] for k in same}:
            raise ConfigError(f"{out} holds a cache made with other parameters ({json.dumps(same)}); "
                              "choose another --out or delete it")
    else:
        cache.write_meta(meta)

    started = time.perf_counter()
    items = dataset_items(dataset, root, strict=strict)
    summary = PrepareSummary(samples=len(items))
    todo = [it for it in items if not cache.has(it.key)]
    summary.done_before = len(items) - len(todo)

    bar = tqdm(total=len(todo), desc=f"prepare {dataset}", unit="sample", disable=not progress)
    for key, arrays, problem in _run(todo, spec.to_dict(), min_score, every, workers):
        bar.update(1)
        if problem is not None:
            if strict:
                bar.close()
                raise DatasetError(problem)
            log.warning("skipping %s: %s", key, problem)
            summary.broken[key] = problem
            continue
        cache.write(key, **arrays)
        summary.prepared += 1
        summary.frames += len(arrays["crops"])
        summary.faces += int(arrays["has_face"].sum())
        if not arrays["has_face"].any():
            summary.without_face.append(key)
    bar.close()
    summary.seconds = time.perf_counter() - started
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def _run(items: list[PrepareItem], crop: dict, min_score: float, every: int,
         workers: int) -> Iterator[tuple[str, dict | None, str | None]]:
    if workers == 1 or len(items) < 2:
        yield from (prepare_one(it, crop, min_score, every) for it in items)
        return
    # spawn, not fork: a forked child inherits MediaPipe's and torch's threads mid-state and may die at once
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(prepare_one, it, crop, min_score, every) for it in items]
        yield from _in_order(futures)


def _in_order(futures: Iterable) -> Iterator:
    for f in futures:
        yield f.result()


# -- command line ----------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS, help="layout of ROOT")
    p.add_argument("root", type=Path, help="dataset root (only read)")
    p.add_argument("--out", type=Path, help="cache folder (default: data/cache/<dataset>-<root name>)")
    p.add_argument("--size", type=int, default=112, help="crop side in pixels (default 112)")
    p.add_argument("--margin", type=float, default=0.25, help="box growth on each side, fraction (default 0.25)")
    p.add_argument("--min-score", type=float, default=0.5, help="face detection threshold (default 0.5)")
    p.add_argument("--every", type=int, default=1, help="keep every N-th video frame (default 1: all)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--strict", action="store_true", help="fail on the first broken sample instead of skipping it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    out = args.out or Path("data") / "cache" / f"{args.dataset}-{args.root.resolve().name}"
    summary = prepare(args.dataset, args.root, out, crop={"size": args.size, "margin": args.margin},
                      min_score=args.min_score, every=args.every, workers=args.workers, strict=args.strict,
                      progress=not args.no_progress)
    print(f"face-crop cache: {out}")
    for line in summary.lines():
        print(line)
    return 0
