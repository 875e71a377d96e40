"""A person in front of a camera: identity, head motion, lighting and sensor noise around a `DeformableFace`.

A frame is rendered in three steps (docs/synthetic-data.md, "Video"):

1. the subject's face under the frame's AU intensities (face.py), in template coordinates;
2. placed by a similarity transform (head pose: translation, rotation, scale, plus the subject's face aspect) and
   alpha-composited on the subject's background;
3. lit: y = c(t) * composite + 128 * (1 - c(t)) + b(t) + n, with a slow contrast drift c(t), a brightness drift
   b(t) and sensor noise n ~ N(0, sigma_n^2) per pixel and channel. The subject's light comes from one side: a
   fixed horizontal shading gradient multiplies the background and the face (in face coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.data.synth.face import ACTION_UNITS, TEMPLATE_FACE_WIDTH, DeformableFace, identity_field, template_rgba

N_AU = len(ACTION_UNITS)


def smooth_noise(rng: np.random.Generator, n: int, fps: float, max_hz: float, components: int = 4) -> np.ndarray:
    """A smooth random signal of n samples with zero mean and unit standard deviation: a sum of sinusoids with
    random frequencies in [0.02, max_hz] Hz, random phases and amplitudes falling as 1/sqrt(f)."""
    t = np.arange(n) / fps
    freqs = rng.uniform(0.02, max_hz, components)
    phases = rng.uniform(0, 2 * np.pi, components)
    x = (np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]) / np.sqrt(freqs[:, None] / 0.02)).sum(0)
    x -= x.mean()
    return x / (x.std() + 1e-9)


def bump(t: np.ndarray, onset: float, duration: float) -> np.ndarray:
    """A raised-cosine pulse: 0 before `onset`, 1 at its centre, 0 after `onset + duration`."""
    u = np.clip((t - onset) / duration, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(2 * np.pi * u)


def blinks(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """Blink intensity per frame: a ~0.2 s closing every 2-6 s."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    at = rng.uniform(0.0, 3.0)
    while at < n / fps:
        out = np.maximum(out, bump(t, at, rng.uniform(0.15, 0.3)))
        at += rng.uniform(2.0, 6.0)
    return out


@dataclass
class Person:
    """What stays the same across one subject's recordings (appearance); expressiveness lives with the tasks."""

    face: DeformableFace
    background: np.ndarray  # uint8 (H, W, 3) RGB, shaded
    face_width: float  # pixels in the frame
    aspect: float  # vertical / horizontal scale of the face
    brightness: float  # offset, grey levels
    contrast: float
    noise: float  # luminance noise sigma, grey levels

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.background.shape[:2]
        return w, h


def _recolour(rgba: np.ndarray, rng: np.random.Generator, shading: float) -> np.ndarray:
    """Hue shift, gamma and per-channel gain of the head (skin and hair tone), and side light."""
    rgb = rgba[..., :3]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(rng.integers(-6, 7))) % 180).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0
    rgb = rgb ** np.exp(rng.normal(0.0, 0.15)) * np.exp(rng.normal(0.0, 0.07, 3))
    rgb *= 1.0 + shading * (np.linspace(-0.5, 0.5, rgb.shape[1], dtype=np.float32)[None, :, None])
    return np.dstack([np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), rgba[..., 3]])


def _background(rng: np.random.Generator, w: int, h: int, shading: float) -> np.ndarray:
    """A muted colour gradient with a few large soft blobs (a wall, a curtain), under the side light."""
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    grey = rng.uniform(60, 200)
    base = (grey + rng.normal(0, 18, 3)).astype(np.float32)
    direction = rng.normal(0, 1, 2)
    direction /= np.linalg.norm(direction) + 1e-9
    ramp = ((gx / w - 0.5) * direction[0] + (gy / h - 0.5) * direction[1])[..., None]
    img = base + ramp * rng.uniform(-60, 60, 3).astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        c = (rng.uniform(0, w), rng.uniform(0, h))
        s = rng.uniform(0.1, 0.35) * max(w, h)
        g = np.exp(-((gx - c[0]) ** 2 + (gy - c[1]) ** 2) / (2 * s * s))[..., None]
        img += g * (rng.uniform(-40, 40) + rng.normal(0, 12, 3)).astype(np.float32)
    img *= 1.0 + shading * (gx[..., None] / w - 0.5)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def make_person(rng: np.random.Generator, size: tuple[int, int]) -> Person:
    """A new subject for frames of `size` (width, height)."""
    w, h = size
    shading = rng.uniform(-0.3, 0.3)  # relative brightness change from the left to the right edge
    rgba = _recolour(template_rgba(), rng, shading)
    flip = bool(rng.integers(0, 2))
    t_h, t_w = rgba.shape[:2]
    centre = (t_w / 2.0, t_h / 2.0)
    face = DeformableFace(rgba, flip, identity_field(rng, (t_h, t_w), centre))
    return Person(
        face=face,
        background=_background(rng, w, h, shading),
        face_width=0.45 * min(w, h) * rng.uniform(0.9, 1.12),
        aspect=rng.uniform(0.94, 1.06),
        brightness=rng.normal(0.0, 8.0),
        contrast=rng.uniform(0.85, 1.1),
        noise=rng.uniform(1.5, 3.0),
    )


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (N, H, W, 3) RGB
    affines: np.ndarray  # float32 (N, 2, 3): template pixel -> frame pixel, per frame


def head_pose(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """(N, 4): translation x, y (fractions of the face width), rotation (degrees), log scale; smooth in time."""
    amp = np.array([0.06, 0.04, 4.0, 0.03]) * rng.uniform(0.5, 1.5, 4)
    return np.stack([a * smooth_noise(rng, n, fps, 0.4) for a in amp], axis=1)


def render(person: Person, aus: np.ndarray, rng: np.random.Generator, fps: float, motion: float = 1.0) -> Clip:
    """Frames of one recording: `aus` float (N, n_AU) intensities per frame; `motion` scales the head pose (a
    seated subject facing the camera, as in BioVid, moves less than a person in a video from the wild)."""
    n = len(aus)
    w, h = person.size
    pose = motion * head_pose(rng, n, fps)
    contrast = person.contrast * (1.0 + 0.04 * smooth_noise(rng, n, fps, 0.3))
    brightness = person.brightness + 6.0 * smooth_noise(rng, n, fps, 0.3)
    cx, cy = person.face.landmarks.centre
    # sensor noise: a bank of noise images, each frame adds a randomly shifted window of one of them
    pad = 16
    bank = rng.standard_normal((4, h + pad, w + pad, 3), dtype=np.float32) * person.noise
    noise_pos = np.clip(bank + 0.5, 0, 255).astype(np.uint8)
    noise_neg = np.clip(-bank + 0.5, 0, 255).astype(np.uint8)
    frames = np.empty((n, h, w, 3), np.uint8)
    affines = np.empty((n, 2, 3), np.float32)
    for i in range(n):
        tx, ty, rot, log_s = pose[i]
        scale = person.face_width / TEMPLATE_FACE_WIDTH * np.exp(log_s)
        cos, sin = scale * np.cos(np.deg2rad(rot)), scale * np.sin(np.deg2rad(rot))
        a = np.array([[cos, -sin * person.aspect], [sin, cos * person.aspect]])  # rotation @ scale @ aspect
        target_x, target_y = w / 2.0 + tx * person.face_width, 0.55 * h + ty * person.face_width
        m = np.array([[a[0, 0], a[0, 1], target_x - (a[0, 0] * cx + a[0, 1] * cy)],
                      [a[1, 0], a[1, 1], target_y - (a[1, 0] * cx + a[1, 1] * cy)]])  # template px -> frame px
        head = cv2.warpAffine(person.face.render(aus[i]), m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # (H, W, 4)
        alpha = cv2.extractChannel(head, 3).astype(np.float32) * (1.0 / 255.0)  # (H, W)
        comp = cv2.blendLinear(cv2.cvtColor(head, cv2.COLOR_RGBA2RGB), person.background, alpha, 1.0 - alpha)
        lit = cv2.addWeighted(comp, float(contrast[i]), comp, 0.0, 128.0 * (1.0 - contrast[i]) + brightness[i])
        k, dy, dx = rng.integers(0, 4), rng.integers(0, pad), rng.integers(0, pad)
        lit = cv2.add(lit, noise_pos[k, dy : dy + h, dx : dx + w])
        frames[i] = cv2.subtract(lit, noise_neg[k, dy : dy + h, dx : dx + w])
        affines[i] = m
    return Clip(frames, affines)


def aligned_crop(frame: np.ndarray, affine: np.ndarray, person: Person, size: int = 112) -> np.ndarray:
    """The face cut out of a frame and aligned (rotation removed), like Aff-Wild2's `cropped_aligned` images.

    The crop is the square around the template's face centre, 1.6 face widths on a side, in template coordinates
    mapped through the frame's affine; uint8 (size, size, 3) RGB.
    """
    cx, cy = person.face.landmarks.centre
    side = 1.6 * TEMPLATE_FACE_WIDTH
    k = size / side
    # crop pixel -> template pixel -> frame pixel; warpAffine wants frame -> crop, so invert
    crop_to_template = np.array([[1 / k, 0, cx - side / 2], [0, 1 / k, cy - side / 2], [0, 0, 1]])
    crop_to_frame = np.vstack([affine, [0, 0, 1]]) @ crop_to_template
    return cv2.warpAffine(frame, crop_to_frame[:2], (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
