"""The face-crop cache written by `pkdot prepare` and read by the datasets.

Layout of one cache (one dataset root, one preprocessing):

    <cache>/preprocessing.json           dataset, crop spec, detector, frame stride, pkdot version
    <cache>/crops/<key>.npy              uint8 (N, S, S, 3) RGB face crops, memory-mappable
    <cache>/crops/<key>.meta.npz         frame_index int32 (N,), boxes float32 (N, 4) [x, y, w, h] in frame pixels,
                                         scores float32 (N,), has_face bool (N,), fps float64 ()

`key` is `<subject_name>/<sample_name>` for BioVid and the annotation name (`<video>`, `<video>_left`, ...) for
Aff-Wild2. A sample is complete once its `.meta.npz` exists: both files are written to temporary names and renamed,
meta last, so an interrupted `prepare` never leaves a sample that looks finished.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pkdot_contract.preprocessing.crop import CropSpec
from training.errors import DatasetError

CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedSample:
    crops: np.ndarray  # uint8 (N, S, S, 3), memory-mapped
    frame_index: np.ndarray  # int32 (N,) index of each crop's frame in the source video (0-based)
    boxes: np.ndarray  # float32 (N, 4)
    scores: np.ndarray  # float32 (N,)
    has_face: np.ndarray  # bool (N,) False where no face was found (the crop then reuses the nearest box)
    fps: float  # frame rate of the source video

    @property
    def face_found(self) -> bool:
        return bool(self.has_face.any())


class CropCache:
    """One dataset's face crops under `root`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    @property
    def meta_path(self) -> Path:
        return self.root / "preprocessing.json"

    def _paths(self, key: str) -> tuple[Path, Path]:
        if ".." in Path(key).parts or Path(key).is_absolute():
            raise ValueError(f"invalid sample key {key!r}")
        base = self.root / "crops" / key
        return base.with_name(base.name + ".npy"), base.with_name(base.name + ".meta.npz")

    # -- preprocessing parameters -------------------------------------------------------------------------------
    def write_meta(self, meta: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"cache_version": CACHE_VERSION, **meta}, indent=2) + "\n")
        tmp.replace(self.meta_path)

    def read_meta(self) -> dict:
        if not self.meta_path.is_file():
            raise DatasetError(f"{self.root} is not a face-crop cache (no preprocessing.json): run `pkdot prepare`")
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{self.meta_path} is unreadable: {exc}") from None
        if meta.get("cache_version") != CACHE_VERSION:
            raise DatasetError(f"{self.meta_path}: cache version {meta.get('cache_version')} is not {CACHE_VERSION}")
        return meta

    @property
    def spec(self) -> CropSpec:
        return CropSpec.from_dict(self.read_meta()["crop"])

    # -- samples ------------------------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return self._paths(key)[1].is_file()

    def keys(self) -> list[str]:
        crops = self.root / "crops"
        return sorted(str(p.relative_to(crops))[: -len(".meta.npz")] for p in crops.rglob("*.meta.npz"))

    def write(self, key: str, crops: np.ndarray, frame_index: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
              has_face: np.ndarray, fps: float) -> None:
        n = len(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"crops must be uint8 (N, S, S, 3), got {crops.dtype} {crops.shape}")
        if not (len(frame_index) == len(boxes) == len(scores) == len(has_face) == n):
            raise ValueError("crops, frame_index, boxes, scores and has_face must have the same length")
        npy, meta = self._paths(key)
        npy.parent.mkdir(parents=True, exist_ok=True)
        tmp_npy, tmp_meta = npy.with_name(npy.name + ".tmp"), meta.with_name(meta.name + ".tmp")
        with open(tmp_npy, "wb") as f:
            np.save(f, np.ascontiguousarray(crops))
        with open(tmp_meta, "wb") as f:
            np.savez(f, frame_index=np.asarray(frame_index, np.int32), boxes=np.asarray(boxes, np.float32),
                     scores=np.asarray(scores, np.float32), has_face=np.asarray(has_face, bool),
                     fps=np.float64(fps))
        tmp_npy.replace(npy)
        tmp_meta.replace(meta)

    def read(self, key: str) -> CachedSample:
        npy, meta = self._paths(key)
        if not meta.is_file():
            raise DatasetError(f"sample {key!r} is not in the face-crop cache {self.root}: run `pkdot prepare`")
        try:
            crops = np.load(npy, mmap_mode="r")
            with np.load(meta) as m:
                return CachedSample(crops, m["frame_index"], m["boxes"], m["scores"], m["has_face"], float(m["fps"]))
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"cached sample {key!r} in {self.root} is corrupt ({exc}): delete it and re-run "
                               "`pkdot prepare`") from None
