"""A synthetic BioVid Heat Pain Database, Part A, in the release's layout:

    samples.csv                                              tab-separated, one row per sample
    video/<subject_name>/<sample_name>.mp4                   H.264, 25 fps, 138 frames (5.5 s)
    biosignals_filtered/<subject_name>/<sample_name>_bio.csv tab-separated: time (us), gsr, ecg, emg_trapezius

with names in the release's style: subject `071309_w_21` (recording date MMDDYY, sex m/w, age), sample
`071309_w_21-PA3-042` (subject, class, the stimulus' running number in the session).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from training.data.synth.biosignals import BIO_CHANNELS, BIO_RATE, pain_biosignals
from training.data.synth.encode import write_mp4
from training.data.synth.output import SynthSummary, check_size, disk_usage, prepare_output_dir, run_jobs
from training.data.synth.pain import (
    CLASS_NAMES,
    PAIN_INTENSITY,
    PainSubject,
    is_stoic,
    make_pain_subject,
    pain_expression,
    pain_response,
)
from training.data.synth.scene import render
from training.data.synth.seeds import rng_for
from training.errors import ConfigError

FPS = 25
SECONDS = 5.5
N_FRAMES = round(SECONDS * FPS)  # 138
N_BIO = round(SECONDS * BIO_RATE)  # 2816
SAMPLES_HEADER = ("subject_id", "subject_name", "class_id", "class_name", "sample_id", "sample_name")
BIO_HEADER = ("time", *BIO_CHANNELS)
OWNED = ("samples.csv", "video", "biosignals_filtered", "synthetic_subjects.csv")
# Not part of BioVid: each subject's drawn constants, for analyses by subject group (readers ignore the file).
TRUTH_FILE = "synthetic_subjects.csv"
DEFAULT_SIZE = (320, 240)
HEAD_MOTION = 0.4  # head pose amplitude relative to Aff-Wild2's: BioVid subjects sit facing the camera


@dataclass(frozen=True)
class BioVidSample:
    subject_id: int
    subject_name: str
    class_id: int
    sample_id: int
    sample_name: str

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.class_id]


def subject_names(n: int, seed: int) -> list[str]:
    """`MMDDYY_s_AA`: a recording date in 2009-2010, sex m or w, age 18-65; all distinct."""
    rng = rng_for(seed, "subject-names")
    names: list[str] = []
    while len(names) < n:
        name = (f"{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}{int(rng.integers(9, 11)):02d}"
                f"_{'mw'[int(rng.integers(0, 2))]}_{int(rng.integers(18, 66))}")
        if name not in names:
            names.append(name)
    return names


def plan_samples(subjects: int, samples_per_class: int, seed: int) -> list[BioVidSample]:
    """Rows of samples.csv, ordered by subject, class and sample name; sample_id counts rows from 0."""
    rows = []
    per_subject = samples_per_class * len(CLASS_NAMES)
    for s, name in enumerate(subject_names(subjects, seed)):
        # the stimulus' running number within the session: distinct, in a session of at least 100 stimuli
        numbers = rng_for(seed, "sample-numbers", s).choice(np.arange(1, max(100, per_subject) + 1), per_subject,
                                                            replace=False)
        width = max(3, len(str(int(numbers.max()))))
        for c, class_name in enumerate(CLASS_NAMES):
            mine = sorted(numbers[c * samples_per_class : (c + 1) * samples_per_class])
            rows += [(s, name, c, f"{name}-{class_name}-{int(k):0{width}d}") for k in mine]
    return [BioVidSample(s, name, c, i, sample) for i, (s, name, c, sample) in enumerate(rows)]


@lru_cache(maxsize=2)
def _subject(seed: int, subject_id: int, size: tuple[int, int]) -> PainSubject:
    return make_pain_subject(rng_for(seed, "subject", subject_id), size, is_stoic(subject_id, seed))


def write_sample(root: Path, sample: BioVidSample, seed: int, size: tuple[int, int]) -> int:
    """The video and the biosignal file of one sample; returns the number of frames written."""
    subject = _subject(seed, sample.subject_id, size)
    response = pain_response(subject, PAIN_INTENSITY[sample.class_id], rng_for(seed, "response", sample.sample_id))
    aus = pain_expression(subject, response, N_FRAMES, FPS, rng_for(seed, "expression", sample.sample_id))
    clip = render(subject.person, aus, rng_for(seed, "camera", sample.sample_id), FPS, motion=HEAD_MOTION)
    signals = pain_biosignals(subject.physiology, response, N_BIO, rng_for(seed, "biosignals", sample.sample_id))

    video_dir = root / "video" / sample.subject_name
    bio_dir = root / "biosignals_filtered" / sample.subject_name
    video_dir.mkdir(parents=True, exist_ok=True)
    bio_dir.mkdir(parents=True, exist_ok=True)
    write_mp4(video_dir / f"{sample.sample_name}.mp4", clip.frames, FPS)
    time_us = np.arange(N_BIO, dtype=np.int64) * 1_000_000 // BIO_RATE
    table = np.column_stack([time_us, *(signals[c] for c in BIO_CHANNELS)])
    np.savetxt(bio_dir / f"{sample.sample_name}_bio.csv", table, fmt=["%d"] + ["%.5f"] * len(BIO_CHANNELS),
               delimiter="\t", header="\t".join(BIO_HEADER), comments="")
    return len(clip.frames)


def _write_job(job: tuple[Path, BioVidSample, int, tuple[int, int]]) -> int:
    return write_sample(*job)


def write_samples_csv(root: Path, samples: list[BioVidSample]) -> None:
    lines = ["\t".join(SAMPLES_HEADER)]
    lines += [f"{s.subject_id}\t{s.subject_name}\t{s.class_id}\t{s.class_name}\t{s.sample_id}\t{s.sample_name}"
              for s in samples]
    (root / "samples.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_subject_truth(root: Path, samples: list[BioVidSample], seed: int, size: tuple[int, int]) -> None:
    """TRUTH_FILE: per subject its sensitivity kappa_s, expressiveness e_s and whether it is stoic (tab-separated)."""
    lines = ["subject_id\tsubject_name\tsensitivity\texpressiveness\tstoic"]
    for sid, name in dict.fromkeys((s.subject_id, s.subject_name) for s in samples):
        subject = _subject(seed, sid, size)
        lines.append(f"{sid}\t{name}\t{subject.sensitivity:.4f}\t{subject.expressiveness:.4f}\t"
                     f"{int(is_stoic(sid, seed))}")
    (root / TRUTH_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_subject_truth(root: Path) -> dict[str, dict[str, float]] | None:
    """TRUTH_FILE of a synthetic dataset as {subject_name: {sensitivity, expressiveness, stoic}}; None if absent."""
    path = Path(root) / TRUTH_FILE
    if not path.is_file():
        return None
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    return {r[1]: {"sensitivity": float(r[2]), "expressiveness": float(r[3]), "stoic": bool(int(r[4]))} for r in rows}


def write_biovid(
    out: str | os.PathLike,
    subjects: int = 20,
    samples_per_class: int = 3,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    force: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> SynthSummary:
    """Write a synthetic BioVid Part A into `out` (created; must be empty unless `force`).

    subjects x 5 classes x samples_per_class samples; `size` is (width, height) of the videos; `workers`
    processes render in parallel (the output does not depend on it); `progress` shows a tqdm bar.
    """
    if subjects < 1 or samples_per_class < 1:
        raise ConfigError(f"need at least one subject and one sample per class, not {subjects} and "
                          f"{samples_per_class}")
    if seed < 0:
        raise ConfigError(f"the seed must be a non-negative integer, not {seed}")
    size = check_size(size)
    start = time.perf_counter()
    root = prepare_output_dir(out, OWNED, force)
    samples = plan_samples(subjects, samples_per_class, seed)
    write_samples_csv(root, samples)
    write_subject_truth(root, samples, seed, size)
    from tqdm import tqdm

    with tqdm(total=len(samples), desc="biovid", unit="sample", disable=not progress) as bar:
        frames = run_jobs(_write_job, [(root, s, seed, size) for s in samples], workers, lambda _: bar.update())
    return SynthSummary("biovid", root, subjects, len(samples), len(samples), sum(frames), disk_usage(root),
                        time.perf_counter() - start)
