"""A synthetic Aff-Wild2 (valence-arousal track) in the release's layout:

    videos/batch1/<video>.mp4, videos/batch2/<video>.mp4           H.264 + AAC mono audio, 30 fps
    annotations/VA_Estimation_Challenge/Train_Set/<track>.txt      "valence,arousal", then one "v,a" line per
    annotations/VA_Estimation_Challenge/Validation_Set/<track>.txt  frame; "-5,-5" marks a frame to ignore
    cropped_aligned/<track>/00001.jpg ...                           optional: 112x112 aligned faces, one per frame

Names follow the release: `<n>-30-<W>x<H>` and `video<n>`. One video (when there are at least two) shows two
people side by side; its tracks are `<video>_left` and `<video>_right`, and both take their audio from `<video>`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.data.synth.affect import affect_expression, affect_labels, make_affect_person
from training.data.synth.encode import write_mp4
from training.data.synth.output import SynthSummary, check_size, disk_usage, prepare_output_dir, run_jobs
from training.data.synth.pain import is_stoic
from training.data.synth.scene import aligned_crop, render
from training.data.synth.seeds import rng_for
from training.data.synth.voice import AUDIO_RATE, plan_speech, speak
from training.errors import ConfigError

FPS = 30
ANNOTATIONS = Path("annotations") / "VA_Estimation_Challenge"
SPLITS = ("Train_Set", "Validation_Set")
OWNED = ("videos", "annotations", "cropped_aligned")
DEFAULT_SIZE = (320, 240)
IGNORE = "-5,-5"


@dataclass(frozen=True)
class VideoPlan:
    index: int  # position in the plan; with the person's side (0 left or only, 1 right), its random streams
    name: str
    split: str  # "Train_Set" or "Validation_Set"
    batch: str  # folder under videos/
    people: int  # 1, or 2 side by side
    size: tuple[int, int]  # frame (width, height)

    @property
    def tracks(self) -> list[str]:
        return [self.name] if self.people == 1 else [f"{self.name}_left", f"{self.name}_right"]


def plan_videos(videos: int, seed: int, size: tuple[int, int], two_person: bool = True) -> list[VideoPlan]:
    """Names, splits and folders. About 30 % of the videos (at least one, when there are two) are validation."""
    rng = rng_for(seed, "video-names")
    numbers = rng.choice(np.arange(1, 450), videos, replace=False)
    n_val = max(1, round(0.3 * videos)) if videos >= 2 else 0
    n_train = videos - n_val
    w, h = size
    plans = []
    for i, k in enumerate(numbers):
        people = 2 if two_person and videos >= 2 and i == n_train - 1 else 1
        vw = w * people
        name = f"video{k}" if i % 3 == 1 else f"{k}-30-{vw}x{h}"
        split = SPLITS[0] if i < n_train else SPLITS[1]
        plans.append(VideoPlan(i, name, split, "batch1" if i < (videos + 1) // 2 else "batch2", people, (vw, h)))
    return plans


def annotation_lines(valence: np.ndarray, arousal: np.ndarray, rng: np.random.Generator) -> list[str]:
    """The lines of one track's file; 1-2 stretches of 5-20 frames are marked "-5,-5" (not annotated)."""
    n = len(valence)
    ignore = np.zeros(n, bool)
    for _ in range(int(rng.integers(1, 3))):
        start = int(rng.integers(0, max(1, n - 5)))
        ignore[start : start + int(rng.integers(5, 21))] = True
    lines = ["valence,arousal"]
    for v, a, skip in zip(valence, arousal, ignore, strict=True):
        lines.append(IGNORE if skip else f"{round(float(v), 3) + 0.0:.3f},{round(float(a), 3) + 0.0:.3f}")
    return lines


def write_video(root: Path, plan: VideoPlan, seed: int, seconds: float, cropped_aligned: bool) -> int:
    """The video, its annotation file(s) and optionally its aligned crops; returns the number of frames."""
    n = round(seconds * FPS)
    n_audio = round(n / FPS * AUDIO_RATE)
    width, height = plan.size
    person_size = (width // plan.people, height)
    rng = rng_for(seed, "speech", plan.index)
    if plan.people == 1:
        turns = [[(0.0, n / FPS)]]
    else:  # the two people take turns: left, right, left, ...
        turns, t, who = [[], []], 0.0, 0
        while t < n / FPS:
            end = t + rng.uniform(1.5, 4.0)
            turns[who].append((t, end))
            t, who = end + rng.uniform(0.1, 0.6), 1 - who
    frames, audio = [], np.zeros(n_audio, np.float32)
    for p in range(plan.people):
        pid = (plan.index, p)
        reserved = is_stoic(plan.index, seed)
        who = make_affect_person(rng_for(seed, "person", *pid), person_size, reserved)
        valence, arousal = affect_labels(rng_for(seed, "labels", *pid), n, FPS)
        syllables = plan_speech(rng_for(seed, "syllables", *pid), turns[p])
        aus = affect_expression(who, valence, arousal, syllables, FPS, rng_for(seed, "expression", *pid))
        clip = render(who.person, aus, rng_for(seed, "camera", *pid), FPS)
        audio += speak(who.voice, syllables, valence, arousal, FPS, n_audio, rng_for(seed, "voice", *pid))
        frames.append(clip.frames)
        track = plan.tracks[p]
        lines = annotation_lines(valence, arousal, rng_for(seed, "ignore", *pid))
        ann_dir = root / ANNOTATIONS / plan.split
        ann_dir.mkdir(parents=True, exist_ok=True)
        (ann_dir / f"{track}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if cropped_aligned:
            crop_dir = root / "cropped_aligned" / track
            crop_dir.mkdir(parents=True, exist_ok=True)
            for i, (frame, affine) in enumerate(zip(clip.frames, clip.affines, strict=True)):
                crop = aligned_crop(frame, affine, who.person)
                cv2.imwrite(str(crop_dir / f"{i + 1:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
    video_dir = root / "videos" / plan.batch
    video_dir.mkdir(parents=True, exist_ok=True)
    write_mp4(video_dir / f"{plan.name}.mp4", np.concatenate(frames, axis=2), FPS, np.clip(audio, -1, 1), AUDIO_RATE)
    return n


def _write_job(job: tuple[Path, VideoPlan, int, float, bool]) -> int:
    return write_video(*job)


def write_affwild2(
    out: str | os.PathLike,
    videos: int = 32,
    seconds: float = 12.0,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    cropped_aligned: bool = False,
    two_person: bool = True,
    force: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> SynthSummary:
    """Write a synthetic Aff-Wild2 VA set into `out` (created; must be empty unless `force`).

    `videos` videos of `seconds` each; `size` is one person's frame (width, height), the two-person video is
    twice as wide; `cropped_aligned` also writes the aligned face crops; `workers` processes render in parallel
    (the output does not depend on it); `progress` shows a tqdm bar.
    """
    if videos < 1:
        raise ConfigError(f"need at least one video, not {videos}")
    if not 1.0 <= seconds <= 600.0:
        raise ConfigError(f"--seconds must be between 1 and 600, not {seconds}")
    if seed < 0:
        raise ConfigError(f"the seed must be a non-negative integer, not {seed}")
    size = check_size(size)
    start = time.perf_counter()
    root = prepare_output_dir(out, OWNED, force)
    plans = plan_videos(videos, seed, size, two_person)
    for split in SPLITS:  # both exist in the release, even when one of them has no video here
        (root / ANNOTATIONS / split).mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    with tqdm(total=len(plans), desc="affwild2", unit="video", disable=not progress) as bar:
        frames = run_jobs(_write_job, [(root, p, seed, seconds, cropped_aligned) for p in plans], workers,
                          lambda _: bar.update())
    people = sum(p.people for p in plans)
    return SynthSummary("affwild2", root, people, people, len(plans), sum(frames), disk_usage(root),
                        time.perf_counter() - start)
