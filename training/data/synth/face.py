"""A deformable face: the astronaut photograph as a template, warped by a few facial action units.

The template is the head of `skimage.data.astronaut()` (Eileen Collins, a NASA photograph in the public domain,
shipped with scikit-image). Landmark positions below were measured once with MediaPipe Face Mesh on that photo and
are written here in the photo's pixel coordinates, so generation needs no landmark model.

An action unit (AU, after the Facial Action Coding System) is a smooth *forward* displacement field d_a(x) in
template pixels at intensity 1. A frame with intensities w_a is rendered by backward warping (cv2.remap):

    I'(x) = I(x - d_id(x) - sum_a w_a * d_a(x))

where d_id is the subject's fixed identity warp. Fields are sums of anisotropic Gaussians
G(x; c, s) = exp(-((x - cx)^2 / (2 sx^2) + (y - cy)^2 / (2 sy^2))), so they are smooth and fold-free at the
intensities used here (|w_a| <= ~2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# Head crop of the 512x512 astronaut photo: x0, y0, x1, y1. MediaPipe's face box there is about (177, 83, 96, 96).
TEMPLATE_BOX = (130, 4, 314, 270)
TEMPLATE_FACE_WIDTH = 96.0  # pixels, the detector's box width on the unscaled photo
# Outline of hair, face, neck and shoulders (photo coordinates), the compositing mask.
HEAD_OUTLINE = (
    (220, 14), (250, 17), (275, 28), (292, 45), (300, 65), (303, 90), (298, 110), (288, 122), (272, 128),
    (265, 150), (258, 172), (256, 200), (270, 215), (290, 235), (300, 262), (145, 262), (160, 232), (180, 215),
    (190, 200), (188, 172), (180, 150), (172, 128), (158, 120), (150, 100), (152, 70), (160, 45), (180, 26),
    (200, 17),
)  # fmt: skip
# Landmarks (photo coordinates, image-left first): MediaPipe Face Mesh on the astronaut photo.
FACE_CENTRE = (224.0, 122.0)  # between the eyes and the mouth; the point placed by the head pose
BROWS = ((202.0, 89.0), (251.0, 92.0))
EYES = ((204.0, 101.0), (247.0, 104.0))
MOUTH_CORNERS = ((202.0, 139.0), (245.0, 141.0))
MOUTH_CENTRE = (223.0, 146.0)
UPPER_LIP = (223.0, 140.0)
NOSE_WINGS = ((213.0, 128.0), (234.0, 128.0))
CHIN = (221.0, 177.0)

# The action units, in the order of the intensity vectors used everywhere in the generator.
ACTION_UNITS = (
    "brow_lower",  # AU4, corrugator: brows down and together (pain)
    "eye_narrow",  # AU6/7, orbit tightening and cheek raise (pain)
    "nose_wrinkle",  # AU9/10, nose wrinkle and upper-lip raise (pain)
    "mouth_stretch",  # AU20, lips stretched sideways (pain)
    "smile",  # AU12, lip corners up (positive valence; negative intensity pulls them down)
    "brow_raise",  # AU1+2, brows up (arousal, surprise)
    "eye_widen",  # AU5, upper lid raise (arousal)
    "jaw_drop",  # AU26, lower lip and chin down (talking)
    "blink",  # AU45, eyes closed
)
AU_INDEX = {name: i for i, name in enumerate(ACTION_UNITS)}


def _gauss(gx: np.ndarray, gy: np.ndarray, c: tuple[float, float], sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((gx - c[0]) ** 2) / (2 * sx * sx) + ((gy - c[1]) ** 2) / (2 * sy * sy)))


def _to_template(p: tuple[float, float]) -> tuple[float, float]:
    return p[0] - TEMPLATE_BOX[0], p[1] - TEMPLATE_BOX[1]


@dataclass(frozen=True)
class Landmarks:
    """Landmark positions in template pixels (after an optional horizontal flip)."""

    centre: tuple[float, float]
    brows: tuple[tuple[float, float], ...]
    eyes: tuple[tuple[float, float], ...]
    mouth_corners: tuple[tuple[float, float], ...]
    mouth: tuple[float, float]
    upper_lip: tuple[float, float]
    nose_wings: tuple[tuple[float, float], ...]
    chin: tuple[float, float]

    @classmethod
    def of_template(cls, flip: bool, width: int) -> Landmarks:
        def t(p: tuple[float, float]) -> tuple[float, float]:
            x, y = _to_template(p)
            return (width - 1 - x, y) if flip else (x, y)

        return cls(t(FACE_CENTRE), tuple(map(t, BROWS)), tuple(map(t, EYES)), tuple(map(t, MOUTH_CORNERS)),
                   t(MOUTH_CENTRE), t(UPPER_LIP), tuple(map(t, NOSE_WINGS)), t(CHIN))


def action_unit_fields(lm: Landmarks, shape: tuple[int, int]) -> np.ndarray:
    """Unit forward displacement fields, float32 (n_AU, H, W, 2) as (dx, dy) in template pixels."""
    h, w = shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    fields = np.zeros((len(ACTION_UNITS), h, w, 2), np.float32)
    mid_x = lm.centre[0]

    def add(name: str, dx: np.ndarray | float, dy: np.ndarray | float) -> None:
        fields[AU_INDEX[name], ..., 0] += dx
        fields[AU_INDEX[name], ..., 1] += dy

    for bx, by in lm.brows:
        g = _gauss(gx, gy, (bx, by), 11.0, 7.0)
        add("brow_lower", 2.5 * np.sign(mid_x - bx) * g, 4.0 * g)  # down and towards the midline
        g_up = _gauss(gx, gy, (bx, by - 2.0), 13.0, 8.0)
        add("brow_raise", 0.0, -4.0 * g_up)
    for ex, ey in lm.eyes:
        g = _gauss(gx, gy, (ex, ey), 9.0, 6.0)
        add("eye_narrow", 0.0, -0.6 * (gy - ey) * g)  # lids towards the eye's centre line
        add("eye_narrow", 0.0, -2.5 * _gauss(gx, gy, (ex, ey + 14.0), 10.0, 6.0))  # cheek raise
        add("eye_widen", 0.0, 0.35 * (gy - ey) * g)
        add("blink", 0.0, -1.5 * (gy - ey) * _gauss(gx, gy, (ex, ey), 9.0, 5.0))
    for nx, ny in lm.nose_wings:
        add("nose_wrinkle", 0.0, -3.0 * _gauss(gx, gy, (nx, ny), 8.0, 6.0))
    add("nose_wrinkle", 0.0, -2.0 * _gauss(gx, gy, lm.upper_lip, 14.0, 4.0))
    mx, my = lm.mouth
    g_mouth = _gauss(gx, gy, (mx, my), 20.0, 8.0)
    add("mouth_stretch", 0.25 * (gx - mx) * g_mouth, 1.0 * g_mouth)
    for cx, cy in lm.mouth_corners:
        g = _gauss(gx, gy, (cx, cy), 7.0, 6.0)
        add("smile", 1.5 * np.sign(cx - mx) * g, -3.5 * g)
    below = 1.0 / (1.0 + np.exp(-(gy - my) / 2.0))  # only what is below the mouth line moves with the jaw
    add("jaw_drop", 0.0, 4.0 * below * _gauss(gx, gy, (lm.chin[0], lm.chin[1] - 12.0), 20.0, 14.0))
    return fields


def identity_field(rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    """A subject's fixed geometric warp: six random smooth bumps of up to ~3 px, float32 (H, W, 2)."""
    h, w = shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w, 2), np.float32)
    for _ in range(6):
        c = (centre[0] + rng.uniform(-45, 45), centre[1] + rng.uniform(-55, 55))
        g = _gauss(gx, gy, c, rng.uniform(18, 35), rng.uniform(18, 35))
        field[..., 0] += rng.uniform(-3, 3) * g
        field[..., 1] += rng.uniform(-3, 3) * g
    return field


@lru_cache(maxsize=1)
def template_rgba() -> np.ndarray:
    """The head crop with its soft mask as alpha: uint8 (H, W, 4), RGBA."""
    from skimage.data import astronaut

    x0, y0, x1, y1 = TEMPLATE_BOX
    rgb = astronaut()[y0:y1, x0:x1]
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.array(HEAD_OUTLINE, np.int32) - np.array([x0, y0], np.int32)], 255)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    mask = cv2.GaussianBlur(mask, (0, 0), 2.0)
    out = np.dstack([rgb, mask])
    out.setflags(write=False)
    return out


class DeformableFace:
    """One subject's face: a recoloured, optionally mirrored template with its identity warp and AU fields."""

    def __init__(self, rgba: np.ndarray, flip: bool, id_field: np.ndarray) -> None:
        rgba = rgba[:, ::-1] if flip else rgba
        self.rgba = np.ascontiguousarray(rgba)
        h, w = self.rgba.shape[:2]
        self.shape = (h, w)
        self.landmarks = Landmarks.of_template(flip, w)
        fields = action_unit_fields(self.landmarks, (h, w))  # (A, H, W, 2)
        # the fields vanish away from brows, eyes, nose and mouth: keep only the box where any exceeds 0.01 px
        ys, xs = np.nonzero(np.abs(fields).max(axis=(0, 3)) > 0.01)
        self._roi = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        roi_fields = fields[:, self._roi[0], self._roi[1]]
        self._au_fields = np.ascontiguousarray(roi_fields)  # (A, h_roi, w_roi, 2)
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._base = np.stack([gx, gy], axis=-1) - id_field  # (H, W, 2) backward map without expression

    def render(self, intensities: np.ndarray) -> np.ndarray:
        """The template under AU intensities (n_AU,): uint8 (H, W, 4) RGBA in template coordinates."""
        maps = self._base.copy()
        roi = maps[self._roi]  # (h_roi, w_roi, 2), a view
        # element-wise sums in a fixed order, not a BLAS product: BLAS may round differently from run to run
        for a in np.flatnonzero(intensities):
            roi -= np.float32(intensities[a]) * self._au_fields[a]
        return cv2.remap(self.rgba, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)
