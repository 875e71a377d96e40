"""Face crop and normalisation: the one function from a frame to a model input, used by training and serving."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from pkdot_contract.preprocessing.face import FaceBox

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropSpec:
    """How a face box becomes a model input. Recorded in caches and in every model manifest."""

    size: int = 112  # output side in pixels (square)
    margin: float = 0.25  # the box's longer side grows by this fraction on each side before cropping
    colour: str = "RGB"  # channel order of the model input
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)  # per channel, on [0, 1] pixels
    std: tuple[float, float, float] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"crop size must be at least 8 pixels, not {self.size}")
        if not 0.0 <= self.margin <= 2.0:
            raise ValueError(f"crop margin must be in [0, 2], not {self.margin}")
        if self.colour not in ("RGB", "BGR"):
            raise ValueError(f"colour must be 'RGB' or 'BGR', not {self.colour!r}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def crop_face(rgb: np.ndarray, box: FaceBox, spec: CropSpec) -> np.ndarray:
    """Square crop around the box, grown by `spec.margin`, edge-replicated where it leaves the frame.

    rgb: uint8 (H, W, 3) RGB.  Returns uint8 (size, size, 3) RGB.
    """
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    side = max(box.w, box.h) * (1.0 + 2.0 * spec.margin)
    scale = spec.size / side
    # affine map: frame pixel -> crop pixel, so that the square [cx - side/2, cx + side/2] fills the output
    m = np.array([[scale, 0.0, spec.size / 2.0 - cx * scale], [0.0, scale, spec.size / 2.0 - cy * scale]])
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(rgb, m, (spec.size, spec.size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=16)
def _normalise_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """float32 (1, 256, 3): (v / 255 - mean_c) / std_c for every uint8 value v and output channel c."""
    v = np.arange(256, dtype=np.float32)[:, None] * np.float32(1.0 / 255.0)  # (256, 1)
    table = (v - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)  # (256, 3)
    return np.ascontiguousarray(table[None])


def to_model_input(crops: np.ndarray, spec: CropSpec, remap: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB crops (..., S, S, 3) -> float32 (..., 3, S, S), channel order and mean/std of the spec.

    Each channel goes through a 256-entry table, (v / 255 - mean) / std, so a frame costs one look-up per value.
    `remap`: an optional uint8 (256, 3) table applied to each RGB channel first (v -> remap[v, c]), folded into the
    same look-up; the result equals normalising the remapped crops.
    """
    if crops.dtype != np.uint8 or crops.ndim < 3 or crops.shape[-1] != 3:
        raise ValueError(f"expected uint8 crops (..., S, S, 3), got {crops.dtype} {crops.shape}")
    table = _normalise_table(tuple(spec.mean), tuple(spec.std))  # (1, 256, 3) per output channel
    if spec.colour == "BGR":
        crops = crops[..., ::-1]
        remap = None if remap is None else remap[:, ::-1]  # (256, 3) per output channel
    if remap is not None:
        if remap.shape != (256, 3) or remap.dtype != np.uint8:
            raise ValueError(f"remap must be a uint8 (256, 3) table, got {remap.dtype} {remap.shape}")
        table = np.take_along_axis(table[0], remap.astype(np.intp), axis=0)[None]  # (1, 256, 3)
    lead, (h, w) = crops.shape[:-3], crops.shape[-3:-1]
    flat = np.ascontiguousarray(crops).reshape(-1, w, 3)  # (N·H, W, 3): one 3-channel image for OpenCV
    x = cv2.LUT(flat, np.ascontiguousarray(table)).reshape(*lead, h, w, 3)  # (..., H, W, 3)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))  # (..., 3, S, S)
