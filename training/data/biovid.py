"""BioVid Heat Pain Database, Part A, in its release layout.

    <root>/samples.csv                                         tab-separated, header subject_id subject_name
                                                               class_id class_name sample_id sample_name
    <root>/video/<subject_name>/<sample_name>.mp4              25 fps, 5.5 s
    <root>/biosignals_filtered/<subject_name>/<sample_name>_bio.csv

Faces come from the face-crop cache written by `pkdot prepare` (key `<subject_name>/<sample_name>`), biosignals
from the release files through `pkdot_contract.preprocessing.signals` (as the service's teacher endpoint reads them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pkdot_contract.preprocessing.crop import CropSpec, to_model_input
from pkdot_contract.tasks import PAIN_LABELS
from pkdot_contract.preprocessing.signals import (
    BIOSIGNAL_CHANNELS,
    BIOVID_RATE_HZ,
    NORMALISATIONS,
    SignalError,
    biosignal_window,
    read_biosignal_csv,
    spectrogram,
)
from training.data.cache import CropCache
from training.data.skipping import SkipLog, SkippedSample
from training.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

SAMPLES_CSV = "samples.csv"
SAMPLE_COLUMNS = ("subject_id", "subject_name", "class_id", "class_name", "sample_id", "sample_name")
CLASS_NAMES = PAIN_LABELS  # class_id 0..4: baseline, then heat pain levels 1..4
WINDOW_S = 5.5  # every Part A sample is a 5.5 s window
TASKS = ("five", "binary")  # five levels 0..4, or BL1 (0) vs PA4 (1)
SIGNALS = ("raw", "spectrogram")


@dataclass(frozen=True)
class BioVidSample:
    subject_id: int
    subject_name: str  # e.g. 071309_w_21
    class_id: int  # 0..4 = BL1, PA1, PA2, PA3, PA4
    class_name: str
    sample_id: int
    sample_name: str  # e.g. 071309_w_21-BL1-081
    video_path: Path  # <root>/video/<subject_name>/<sample_name>.mp4
    biosignal_path: Path  # <root>/biosignals_filtered/<subject_name>/<sample_name>_bio.csv

    @property
    def key(self) -> str:
        """The face-crop cache key."""
        return f"{self.subject_name}/{self.sample_name}"

    @property
    def subject(self) -> str:
        """The person, for subject-independent splits."""
        return self.subject_name


def read_samples_csv(root: str | os.PathLike) -> list[BioVidSample]:
    """Every sample listed in `<root>/samples.csv`, in file order, with the paths of its video and biosignals.

    Columns are found by header name (extra columns are ignored). Raises DatasetError naming the file for: a root
    without samples.csv, missing columns, a row with too few fields, a non-integer id, a class_id outside 0..4 or a
    class_name that does not match it, a duplicated sample_name. Does not check that the files exist.
    """
    root = Path(root)
    path = root / SAMPLES_CSV
    if not path.is_file():
        nested = root / "PartA" / SAMPLES_CSV
        hint = f" (found {nested}: pass its folder)" if nested.is_file() else ""
        raise DatasetError(f"{root} is not a BioVid Part A root: expected {SAMPLES_CSV} (tab-separated, columns "
                           f"{' '.join(SAMPLE_COLUMNS)}) with video/ and biosignals_filtered/ beside it{hint}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise DatasetError(f"{path}: empty; expected a header {' '.join(SAMPLE_COLUMNS)} (tab-separated)")
    header = [h.strip() for h in lines[0].split("\t")]
    missing = [c for c in SAMPLE_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} in the header (has: {', '.join(header)}); "
                           "the file must be tab-separated")
    col = {c: header.index(c) for c in SAMPLE_COLUMNS}
    samples, seen = [], set()
    for lineno, line in enumerate(lines[1:], start=2):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) <= max(col.values()):
            raise DatasetError(f"{path}, line {lineno}: {len(fields)} field(s), expected {len(header)}")
        row = {c: fields[i] for c, i in col.items()}
        ints = {}
        for c in ("subject_id", "class_id", "sample_id"):
            try:
                ints[c] = int(row[c])
            except ValueError:
                raise DatasetError(f"{path}, line {lineno}: {c} {row[c]!r} is not an integer") from None
        if not 0 <= ints["class_id"] < len(CLASS_NAMES):
            raise DatasetError(f"{path}, line {lineno}: class_id {ints['class_id']} is not in 0..4")
        if row["class_name"] != CLASS_NAMES[ints["class_id"]]:
            raise DatasetError(f"{path}, line {lineno}: class_name {row['class_name']!r} does not match class_id "
                               f"{ints['class_id']} ({CLASS_NAMES[ints['class_id']]})")
        subject, name = row["subject_name"], row["sample_name"]
        if not subject or not name or "/" in subject + name or subject in (".", ".."):
            raise DatasetError(f"{path}, line {lineno}: invalid subject_name {subject!r} or sample_name {name!r}")
        if name in seen:
            raise DatasetError(f"{path}, line {lineno}: sample_name {name!r} appears twice")
        seen.add(name)
        samples.append(BioVidSample(
            subject_id=ints["subject_id"], subject_name=subject, class_id=ints["class_id"],
            class_name=row["class_name"], sample_id=ints["sample_id"], sample_name=name,
            video_path=root / "video" / subject / f"{name}.mp4",
            biosignal_path=root / "biosignals_filtered" / subject / f"{name}_bio.csv",
        ))
    return samples


def tsn_indices(n: int, num_segments: int, train: bool,
                rng: np.random.Generator | TorchDraws | None = None) -> np.ndarray:
    """TSN sampling: positions (num_segments,) in 0..n-1, one per equal segment of range(n), in order.

    Segment k covers [floor(k n / T), floor((k + 1) n / T)); training draws a uniform position inside it,
    evaluation takes its centre (deterministic). With n < T, segments are one position wide and repeat.
    """
    if n < 1 or num_segments < 1:
        raise ValueError(f"need n >= 1 and num_segments >= 1, got {n}, {num_segments}")
    edges = np.floor(np.linspace(0, n, num_segments + 1)).astype(np.int64)  # (T + 1,)
    lo = np.minimum(edges[:-1], n - 1)  # (T,)
    hi = np.maximum(edges[1:], lo + 1)  # (T,) exclusive
    if not train:
        return (lo + hi - 1) // 2
    rng = rng or np.random.default_rng()
    return lo + (rng.random(num_segments) * (hi - lo)).astype(np.int64)


class TorchDraws:
    """The draws a training item makes (uniform, integer, normal; numpy Generator's signatures) taken from torch's
    global RNG: seeded by torch.manual_seed (and per DataLoader worker), so a run is reproducible. A numpy Generator
    made per item costs more than the rest of the augmentation."""

    def random(self, size: int | None = None) -> float | np.ndarray:
        return float(torch.rand(())) if size is None else torch.rand(size, dtype=torch.float64).numpy()

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        return torch.randint(low, high, (size,)).numpy()

    def normal(self, loc: float, scale: float, size: int | None = None) -> float | np.ndarray:
        if size is None:
            return loc + scale * float(torch.randn(()))
        return loc + scale * torch.randn(size, dtype=torch.float64).numpy()


def _augment(crops: np.ndarray, rng: np.random.Generator | TorchDraws, max_shift: int,
             photometric: float) -> tuple[np.ndarray, np.ndarray | None]:
    """augment_clip's geometric part applied, and its photometric part as a uint8 (256, 3) table (None: off)."""
    flip = rng.random() < 0.5
    dy, dx = rng.integers(-max_shift, max_shift + 1, 2)
    t, s = crops.shape[:2]
    if flip or dy or dx:
        rows = np.clip(np.arange(s) - dy, 0, s - 1)  # (S,) source row of each output row
        cols = np.clip(np.arange(s) - dx, 0, s - 1)  # (S,)
        if flip:  # mirrored first, then shifted
            cols = (s - 1) - cols
        pixels = (rows[:, None] * s + cols[None, :]).ravel()  # (S·S,) source pixel of each output pixel
        crops = np.ascontiguousarray(crops).reshape(t, s * s, 3).take(pixels, axis=1).reshape(crops.shape)
    if photometric <= 0:
        return crops, None
    contrast = np.exp(rng.normal(0.0, 0.15 * photometric))
    gain = contrast * np.exp(rng.normal(0.0, 0.08 * photometric, 3))  # (3,)
    mean = float(crops.mean())
    shift = rng.normal(0.0, 12.0 * photometric)
    v = np.arange(256, dtype=np.float64)[:, None]  # (256, 1)
    return crops, np.clip((v - mean) * gain + mean + shift + 0.5, 0, 255).astype(np.uint8)  # (256, 3) per channel


def augment_clip(crops: np.ndarray, rng: np.random.Generator | TorchDraws, max_shift: int = 2,
                 photometric: float = 0.0) -> np.ndarray:
    """The same random horizontal flip and shift of up to `max_shift` px (edges replicated) for every frame of a
    clip (T, S, S, 3): what detector jitter and mirrored cameras do, without changing the expression.

    `photometric` > 0 also changes the clip's light and colour alike in every frame: contrast exp(N(0, 0.15 p)),
    brightness N(0, 12 p) grey levels and a gain exp(N(0, 0.08 p)) per colour channel, p = photometric. Skin tone,
    make-up, light and camera differ between people; the expression is in the geometry, so a student should not
    lean on colour to tell who it sees.
    """
    crops, table = _augment(crops, rng, max_shift, photometric)
    if table is None:
        return crops
    s = crops.shape[1]
    return cv2.LUT(crops.reshape(-1, s, 3), np.ascontiguousarray(table[None])).reshape(crops.shape)


def augmented_model_input(crops: np.ndarray, rng: np.random.Generator | TorchDraws, spec: CropSpec,
                          photometric: float = 0.0) -> np.ndarray:
    """to_model_input(augment_clip(crops, rng, photometric=photometric), spec) with the light change folded into
    the normalisation table: one look-up per value instead of two. float32 (T, 3, S, S)."""
    crops, table = _augment(crops, rng, 2, photometric)
    return to_model_input(crops, spec, remap=table)


@lru_cache(maxsize=4096)  # 4096 windows of two channels: about 90 MB
def _read_window(path: str, stamp: tuple[int, int], channels: tuple[str, ...], normalise: str) -> np.ndarray:
    rate, chans = read_biosignal_csv(path, expected_rate_hz=BIOVID_RATE_HZ)
    window = biosignal_window(chans, rate, channels, 0.0, WINDOW_S, normalise=normalise)  # (C, L)
    window.flags.writeable = False  # shared by every dataset of this process
    return window


def _biosignal_window(path: Path, channels: tuple[str, ...], normalise: str) -> np.ndarray:
    """The sample's 5.5 s window (C, L), parsed once per process for a file that has not changed: an experiment
    builds the same datasets for every run, and parsing the CSV files was the larger part of building them."""
    st = path.stat()
    return _read_window(str(path), (st.st_mtime_ns, st.st_size), tuple(channels), normalise)


class BioVidDataset(Dataset):
    """BioVid Part A samples: face frames from the crop cache and biosignals from the release files.

    Each item is a dict:
        video    float32 tensor (T, 3, S, S)  T = num_frames TSN-sampled face crops, normalised by `to_model_input`
        signal   float32 tensor (C, L) for signal="raw" (L = 2816 at 512 Hz: the z-scored 5.5 s window) or
                 (C, F, T') for signal="spectrogram" ((C, 65, 127) at 512 Hz); absent when with_signal=False
        label    int  class_id 0..4 (task="five") or 0 = BL1, 1 = PA4 (task="binary")
        subject  str  subject_name
        key      str  `<subject_name>/<sample_name>`

    samples: the samples to use (a split's list of BioVidSample, or their keys); None = all of samples.csv.
    task="binary" keeps only BL1 and PA4 (the other classes are left out, not counted as skipped).
    A sample whose video file or biosignal file is missing, whose biosignal is unreadable or lacks a channel, or
    whose cache entry is missing, corrupt or has no face in any frame is skipped with a warning and recorded in
    `skipped` (strict=True raises DatasetError on the first instead). check_videos=True also opens every video
    (slower; by default the cache entry, which `pkdot prepare` only writes for a decodable video, stands for it).
    Biosignal windows are read and checked once, in the constructor, and kept in memory (C * L floats each); each
    sample's crops are memory-mapped once there too.
    """

    def __init__(self, root: str | os.PathLike, cache: str | os.PathLike | CropCache,
                 samples: Sequence[BioVidSample | str] | None = None, *, num_frames: int = 10, train: bool = False,
                 channels: Sequence[str] = ("gsr",), signal: str = "raw", task: str = "five",
                 with_signal: bool = True, strict: bool = False, check_videos: bool = False,
                 normalise: str = "zscore", augment: bool = False, photometric: float = 0.0) -> None:
        if task not in TASKS:
            raise ConfigError(f"unknown BioVid task {task!r}: choose one of {', '.join(TASKS)}")
        if signal not in SIGNALS:
            raise ConfigError(f"unknown signal form {signal!r}: choose one of {', '.join(SIGNALS)}")
        unknown = [c for c in channels if c not in BIOSIGNAL_CHANNELS]
        if not channels or unknown:
            raise ConfigError(f"biosignal channels must be some of {', '.join(BIOSIGNAL_CHANNELS)}, "
                              f"got {list(channels)}")
        if num_frames < 1:
            raise ConfigError(f"num_frames must be at least 1, not {num_frames}")
        self.root = Path(root)
        self.cache = cache if isinstance(cache, CropCache) else CropCache(cache)
        meta = self.cache.read_meta()
        if meta.get("dataset", "biovid") != "biovid":
            raise DatasetError(f"{self.cache.root} is a face-crop cache of {meta['dataset']!r}, not of BioVid")
        self.spec = self.cache.spec
        self.num_frames, self.train, self.task = num_frames, train, task
        self.channels, self.signal, self.with_signal = tuple(channels), signal, with_signal
        if normalise not in NORMALISATIONS:
            raise ConfigError(f"unknown biosignal normalisation {normalise!r}: choose one of "
                              f"{', '.join(NORMALISATIONS)}")
        self.normalise = normalise
        self.augment, self.photometric = augment, photometric

        everything = read_samples_csv(self.root)
        if samples is None:
            wanted = everything
        else:
            by_key = {s.key: s for s in everything}
            unknown_keys = [s for s in samples if isinstance(s, str) and s not in by_key]
            if unknown_keys:
                raise DatasetError(f"{len(unknown_keys)} sample key(s) not in {self.root / SAMPLES_CSV}, "
                                   f"e.g. {unknown_keys[0]!r}")
            wanted = [by_key[s] if isinstance(s, str) else s for s in samples]
        if task == "binary":
            wanted = [s for s in wanted if s.class_id in (0, 4)]

        self._skips = SkipLog(strict, log)
        self.samples: list[BioVidSample] = []
        self._frames: list[np.ndarray] = []  # per sample: positions of the cached crops inside the 5.5 s window
        self._signals: list[np.ndarray] = []  # per sample: float32 (C, L)
        self._crops: list[np.ndarray] = []  # per sample: uint8 (N, S, S, 3), the cache entry memory-mapped once
        for s in wanted:
            loaded = self._load(s, check_videos)
            if loaded is not None:
                self.samples.append(s)
                self._frames.append(loaded[0])
                self._signals.append(loaded[1])
                self._crops.append(loaded[2])
        if not self.samples:
            raise DatasetError(f"no usable BioVid sample in {self.root} ({len(wanted)} requested, "
                               f"{len(self.skipped)} skipped: {self.skip_counts})")
        if self.skipped:
            log.warning("BioVid %s: %d of %d samples skipped (%s)", self.root, len(self.skipped), len(wanted),
                        self.skip_counts)

    def _load(self, s: BioVidSample, check_videos: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        skip = self._skips.skip
        if not s.video_path.is_file():
            return skip(s.key, "video missing", f"{s.video_path}: video file not found")
        if check_videos:
            from pkdot_contract.preprocessing.media import MediaError, video_info

            try:
                video_info(s.video_path)
            except MediaError as exc:
                return skip(s.key, "video unreadable", f"{s.video_path}: {exc}")
        if not s.biosignal_path.is_file():
            return skip(s.key, "biosignal missing", f"{s.biosignal_path}: biosignal file not found")
        try:
            window = _biosignal_window(s.biosignal_path, self.channels, self.normalise)  # (C, L)
        except SignalError as exc:
            detail = str(exc) if str(s.biosignal_path) in str(exc) else f"{s.biosignal_path}: {exc}"
            return skip(s.key, "biosignal unreadable", detail)
        if not self.cache.has(s.key):
            return skip(s.key, "not in cache", f"{s.video_path}: no face crops in the cache {self.cache.root} "
                        "(run `pkdot prepare`)")
        try:
            cached = self.cache.read(s.key)
        except DatasetError as exc:
            return skip(s.key, "cache unreadable", f"{s.video_path}: {exc}")
        if not cached.face_found:
            return skip(s.key, "no face", f"{s.video_path}: no face was found in any frame")
        # the crops inside the 5.5 s window, in frame order (the whole clip for a standard Part A video)
        order = np.argsort(cached.frame_index, kind="stable")
        if cached.fps > 0:
            inside = cached.frame_index[order] < np.ceil(WINDOW_S * cached.fps)
            order = order[inside] if inside.any() else order
        return order.astype(np.int64), window, cached.crops

    @property
    def skipped(self) -> list[SkippedSample]:
        """SkippedSample(key, reason, detail) for every skipped sample."""
        return self._skips.items

    @property
    def skip_counts(self) -> dict[str, int]:
        return self._skips.counts()

    @property
    def labels(self) -> list[int]:
        return [self._label(s) for s in self.samples]

    @property
    def num_classes(self) -> int:
        return 2 if self.task == "binary" else len(CLASS_NAMES)

    def _label(self, s: BioVidSample) -> int:
        return int(s.class_id == 4) if self.task == "binary" else s.class_id

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        order = self._frames[i]
        rng = TorchDraws()  # reproducible: torch's RNG is seeded per run and per DataLoader worker
        pick = order[tsn_indices(len(order), self.num_frames, self.train, rng)]  # (T,) rows of the cache entry
        crops = np.asarray(self._crops[i][pick])  # (T, S, S, 3) uint8
        video = (augmented_model_input(crops, rng, self.spec, self.photometric) if self.augment
                 else to_model_input(crops, self.spec))  # (T, 3, S, S)
        item = {"video": torch.from_numpy(video),
                "label": self._label(s), "subject": s.subject_name, "key": s.key}
        if self.with_signal:
            x = self._signals[i]  # (C, L), kept for the next epoch: the item gets a copy
            x = spectrogram(x, BIOVID_RATE_HZ) if self.signal == "spectrogram" else x.copy()  # (C, F, T') or (C, L)
            item["signal"] = torch.from_numpy(x)
        return item
