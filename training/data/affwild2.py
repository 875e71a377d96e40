"""Aff-Wild2 valence/arousal (VA Estimation Challenge) in its release layout.

    <root>/videos/**/<video>.mp4|.avi                              anywhere under videos/ (batch1/, batch2/, ...)
    <root>/cropped_aligned/<name>/00001.jpg ...                    optional; 00001.jpg is frame 0
    <root>/annotations/VA_Estimation_Challenge/Train_Set/<name>.txt
    <root>/annotations/VA_Estimation_Challenge/Validation_Set/<name>.txt

An annotation file has the header `valence,arousal`, then one line per video frame (line i after the header is
frame i, 0-based, i.e. cropped_aligned `%05d.jpg` number i + 1); -5 in either value marks a frame to ignore.
`<video>_left` / `<video>_right` annotate two people of the video `<video>`: they take its frames and its audio,
and are two subjects. Faces come from the crop cache of `pkdot prepare` (key = annotation name), audio from the
video through `pkdot_contract.preprocessing.audio` (the functions the service's teacher endpoint uses).

Annotation length: the released files are often a few lines longer or shorter than the decoded video. An annotation
is accepted when it differs from the video's frame count by at most `frame_tolerance` frames (default 5); only the
frames both have are used. A larger difference means the annotation belongs to another video or a cut file, and the
sample is skipped (or, strict, refused).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from pkdot_contract.preprocessing.audio import AUDIO_RATE_HZ, N_MELS, audio_window, log_mel
from pkdot_contract.preprocessing.crop import to_model_input
from pkdot_contract.preprocessing.media import MediaError, decode_audio, video_info
from training.data.biovid import TorchDraws, augmented_model_input
from training.data.cache import CropCache
from training.data.skipping import SkipLog, SkippedSample
from training.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

ANNOTATION_DIR = Path("annotations") / "VA_Estimation_Challenge"
SET_DIRS = {"train": "Train_Set", "val": "Validation_Set"}
VIDEO_SUFFIXES = (".mp4", ".avi")
IGNORE_VALUE = -5.0
FRAME_TOLERANCE = 5


@dataclass(frozen=True)
class AffWild2Entry:
    """One annotated person: an annotation file and the video (and optional aligned crops) it refers to."""

    name: str  # annotation name: <video>, <video>_left or <video>_right; the cache key
    set_name: str  # "Train_Set" or "Validation_Set"
    annotation_path: Path
    video_name: str  # the video it annotates (without _left/_right)
    video_path: Path
    aligned_dir: Path | None  # cropped_aligned/<name>/ (or cropped_aligned/<video>/) when present

    @property
    def key(self) -> str:
        return self.name

    @property
    def subject(self) -> str:
        """The person, for subject-independent splits: _left and _right are different people."""
        return self.name


class VAAnnotation(NamedTuple):
    values: np.ndarray  # float32 (N, 2) valence, arousal in [-1, 1]; 0 where ignored
    valid: np.ndarray  # bool (N,) False where the line had -5


def parse_sets(sets: str | Sequence[str]) -> tuple[str, ...]:
    """"train" | "val" | "both" (or the folder names, or a list of them) -> folder names."""
    if isinstance(sets, str):
        sets = ("train", "val") if sets in ("both", "all") else (sets,)
    out = []
    for s in sets:
        folder = SET_DIRS.get(s, s)
        if folder not in SET_DIRS.values():
            raise ConfigError(f"unknown Aff-Wild2 set {s!r}: choose train, val or both")
        out.append(folder)
    return tuple(dict.fromkeys(out))


def find_videos(root: str | os.PathLike) -> dict[str, Path]:
    """Video name (file stem) -> path, for every .mp4/.avi anywhere under `<root>/videos`."""
    found: dict[str, Path] = {}
    for p in sorted((Path(root) / "videos").rglob("*")):
        if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file():
            if p.stem in found:
                raise DatasetError(f"two videos named {p.stem!r}: {found[p.stem]} and {p}; remove one")
            found[p.stem] = p
    return found


def video_name_for(name: str, videos: dict[str, Path] | set[str]) -> str | None:
    """The video an annotation name refers to: itself, or without its _left/_right suffix. None when absent."""
    if name in videos:
        return name
    for suffix in ("_left", "_right"):
        if name.endswith(suffix) and name[: -len(suffix)] in videos:
            return name[: -len(suffix)]
    return None


def index_affwild2(root: str | os.PathLike, sets: str | Sequence[str] = "both",
                   strict: bool = False) -> list[AffWild2Entry]:
    """Every annotation file of the chosen sets with its video, sorted by set and name.

    Raises DatasetError for a root without annotations/VA_Estimation_Challenge, none of the set folders, or a name
    in two sets. An annotation whose video is not under videos/ is skipped with a warning (strict: DatasetError).
    Cheap: files are listed, not read.
    """
    return _index(Path(root), parse_sets(sets), SkipLog(strict, log))


def _index(root: Path, sets: tuple[str, ...], skips: SkipLog) -> list[AffWild2Entry]:
    ann_root = root / ANNOTATION_DIR
    if not ann_root.is_dir():
        raise DatasetError(f"{root} is not an Aff-Wild2 root: expected {ANNOTATION_DIR}/{{Train_Set,Validation_Set}}"
                           "/<video>.txt and videos/ beside annotations/")
    present = [s for s in sets if (ann_root / s).is_dir()]
    if not present:
        raise DatasetError(f"{ann_root} has none of the folders {', '.join(sets)}")
    videos = find_videos(root)
    entries, seen = [], {}
    for set_name in present:
        for path in sorted((ann_root / set_name).glob("*.txt")):
            name = path.stem
            if name in seen:
                raise DatasetError(f"annotation {name!r} is in both {seen[name]} and {path}")
            seen[name] = path
            video = video_name_for(name, videos)
            if video is None:
                skips.skip(name, "video missing", f"{path}: no video {name}.mp4/.avi (nor its _left/_right base) "
                           f"under {root / 'videos'}")
                continue
            aligned = next((d for d in (root / "cropped_aligned" / name, root / "cropped_aligned" / video)
                            if d.is_dir()), None)
            entries.append(AffWild2Entry(name, set_name, path, video, videos[video], aligned))
    return entries


def aligned_frames(aligned_dir: str | os.PathLike) -> dict[int, Path]:
    """The cropped_aligned JPEGs of one folder by 0-based frame index (00001.jpg is frame 0; other names ignored)."""
    out = {}
    for p in sorted(Path(aligned_dir).glob("*.jpg")):
        if p.stem.isdigit() and int(p.stem) >= 1:
            out[int(p.stem) - 1] = p
    return out


def read_va_annotation(path: str | os.PathLike) -> VAAnnotation:
    """Parse one annotation file. DatasetError naming the file and line for: a missing or wrong header, no frame
    lines, a line that is not two numbers, a value outside [-1, 1] that is not the ignore marker -5."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable annotation ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or lines[0].replace(" ", "").strip().lower() != "valence,arousal":
        first = lines[0][:40] if lines else ""
        raise DatasetError(f"{path}: the first line must be 'valence,arousal', not {first!r}")
    if len(lines) == 1:
        raise DatasetError(f"{path}: no frame lines after the header")
    values = np.zeros((len(lines) - 1, 2), np.float32)
    for i, line in enumerate(lines[1:]):
        fields = line.split(",")
        try:
            if len(fields) != 2:
                raise ValueError
            values[i] = float(fields[0]), float(fields[1])
        except ValueError:
            raise DatasetError(f"{path}, line {i + 2}: {line.strip()!r} is not 'valence,arousal' numbers") from None
    ignored = (values == IGNORE_VALUE).any(axis=1)
    bad = ~ignored & ~(np.abs(values) <= 1.0).all(axis=1)  # also catches NaN
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(f"{path}, line {i + 2}: {lines[i + 1].strip()!r} is outside [-1, 1] (and not the "
                           "ignore marker -5)")
    values[ignored] = 0.0
    return VAAnnotation(values, ~ignored)


def count_video_frames(path: str | os.PathLike) -> tuple[int, float, bool]:
    """(frames, fps, has_audio) of a video; frames from the container, or by counting packets when it is unknown."""
    info = video_info(path)
    frames = info.frames
    if frames <= 0:
        import av

        try:
            with av.open(os.fspath(path)) as container:
                frames = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
        except av.error.FFmpegError as exc:
            raise MediaError(f"could not count frames: {exc}") from None
    return frames, info.fps, info.has_audio


@dataclass
class _Video:
    """What the dataset keeps per usable entry (all small arrays)."""

    entry: AffWild2Entry
    labels: np.ndarray  # float32 (n, 2), n = frames both the annotation and the video have
    valid: np.ndarray  # bool (n,)
    cached_frames: np.ndarray  # int64 (M,) sorted frame indices that have a cached crop
    cached_rows: np.ndarray  # int64 (M,) the cache row of each
    targets: np.ndarray  # int64 (K,) target frames of this entry's items
    fps: float
    crops: np.ndarray  # uint8 (M, S, S, 3) the cache entry's crops, memory-mapped once


class AffWild2Dataset(Dataset):
    """Clips of face crops (and the audio around them) ending at an annotated target frame.

    One item per target frame: a frame with a valid label (not -5) that has a cached face crop and lies inside both
    the annotation and the video; `target_stride` keeps every n-th of them. The clip is the T = num_frames frames
    target - (T - 1) * stride, ..., target - stride, target. A clip frame without its own cached crop shows the
    nearest earlier cached crop (the first one before the first); clip frames before frame 0 repeat it too and are
    masked.

    Each item is a dict:
        video    float32 tensor (T, 3, S, S)  face crops normalised by `to_model_input`
        audio    float32 tensor (1, n_mels, F) log-mel of the `audio_window_s` s of audio centred on the target
                 frame, zero-padded at the ends of the recording ((1, 64, 101) at the defaults); absent when
                 with_audio=False
        va       float32 tensor (2,)   valence, arousal of the target frame (always valid)
        va_seq   float32 tensor (T, 2) valence, arousal of every clip frame (0 where masked)
        mask     bool tensor (T,)      True where va_seq holds a real label (not -5, not before frame 0)
        subject  str  annotation name (the person; _left/_right are two people)
        key      str  annotation name (the cache key)
        frame    int  target frame index (0-based)

    entries: the annotated people to use (a split's AffWild2Entry list, or their names); None = every entry of
    `sets` ("train" = Train_Set, "val" = Validation_Set, "both"). An entry whose video is missing, unreadable or
    silent (require_audio; by default with_audio), whose annotation is invalid or differs in length from the video by more than
    `frame_tolerance` frames, whose cache entry is missing or has no face, or that has no valid target frame is
    skipped with a warning and recorded in `skipped` (strict=True raises DatasetError on the first instead).

    Audio: when `cache_audio` has stored the video's audio in the crop cache (`<cache>/audio/<rate>/<video>.npy`),
    it is memory-mapped from there (shared by all DataLoader workers through the page cache). Otherwise it is
    decoded once per video (16 kHz mono float32, about 3.8 MB per minute) when first needed and kept in memory, per
    process; audio_cache_videos bounds how many videos are kept (least recently used out; None: all).
    Each item's log-mel window is the same every epoch: the first items' windows are kept, up to mel_cache_mb MB
    (about 26 kB each at the defaults).
    """

    def __init__(self, root: str | os.PathLike, cache: str | os.PathLike | CropCache,
                 entries: Sequence[AffWild2Entry | str] | None = None, *, sets: str | Sequence[str] = "train",
                 num_frames: int = 8, stride: int = 1, target_stride: int = 1, with_audio: bool = True,
                 sample_rate: int = AUDIO_RATE_HZ, n_mels: int = N_MELS, audio_window_s: float = 1.0,
                 frame_tolerance: int = FRAME_TOLERANCE, strict: bool = False,
                 audio_cache_videos: int | None = None, augment: bool = False, mel_cache_mb: float = 256.0,
                 photometric: float = 0.0, require_audio: bool | None = None) -> None:
        self.augment, self.photometric = augment, photometric
        if num_frames < 1 or stride < 1 or target_stride < 1:
            raise ConfigError("num_frames, stride and target_stride must be at least 1")
        if frame_tolerance < 0:
            raise ConfigError(f"frame_tolerance must be >= 0, not {frame_tolerance}")
        self.root = Path(root)
        self.cache = cache if isinstance(cache, CropCache) else CropCache(cache)
        meta = self.cache.read_meta()
        if meta.get("dataset", "affwild2") != "affwild2":
            raise DatasetError(f"{self.cache.root} is a face-crop cache of {meta['dataset']!r}, not of Aff-Wild2")
        self.spec = self.cache.spec
        self.num_frames, self.stride, self.target_stride = num_frames, stride, target_stride
        self.with_audio, self.sample_rate, self.n_mels = with_audio, sample_rate, n_mels
        self.require_audio = with_audio if require_audio is None else require_audio
        self.audio_window_s, self.frame_tolerance = audio_window_s, frame_tolerance
        self.audio_cache_videos = audio_cache_videos
        self._audio: OrderedDict[str, np.ndarray] = OrderedDict()
        self._mels: dict[int, np.ndarray] = {}  # item -> log-mel, the first items up to mel_cache_mb
        self._mel_budget = int(mel_cache_mb * 2**20)

        self._skips = SkipLog(strict, log)
        if entries is None:
            wanted = _index(self.root, parse_sets(sets), self._skips)
        else:
            listed = SkipLog(False, None)
            by_name = {e.name: e for e in _index(self.root, parse_sets("both"), listed)}
            unlisted = {s.key: s for s in listed.items}
            wanted = []
            for e in entries:
                if not isinstance(e, str):
                    wanted.append(e)
                elif e in by_name:
                    wanted.append(by_name[e])
                elif e in unlisted:
                    self._skips.skip(e, unlisted[e].reason, unlisted[e].detail)
                else:
                    raise DatasetError(f"no annotation named {e!r} in {self.root / ANNOTATION_DIR}")
        self._videos: list[_Video] = [v for v in map(self._load, wanted) if v is not None]
        if not self._videos:
            raise DatasetError(f"no usable Aff-Wild2 sample in {self.root} ({len(wanted)} requested, "
                               f"{len(self.skipped)} skipped: {self.skip_counts})")
        if self.skipped:
            log.warning("Aff-Wild2 %s: %d annotation(s) skipped (%s)", self.root, len(self.skipped), self.skip_counts)
        self._ends = np.cumsum([len(v.targets) for v in self._videos])  # (videos,) exclusive end of each

    def _load(self, e: AffWild2Entry) -> _Video | None:
        skip = self._skips.skip
        if not e.video_path.is_file():
            return skip(e.name, "video missing", f"{e.video_path}: video file not found")
        try:
            n_video, fps, has_audio = count_video_frames(e.video_path)
        except MediaError as exc:
            return skip(e.name, "video unreadable", f"{e.video_path}: {exc}")
        if fps <= 0:
            return skip(e.name, "video unreadable", f"{e.video_path}: the video declares no frame rate")
        if self.require_audio and not has_audio:
            return skip(e.name, "no audio", f"{e.video_path}: the video has no audio stream")
        try:
            ann = read_va_annotation(e.annotation_path)
        except DatasetError as exc:
            return skip(e.name, "annotation invalid", str(exc))
        if abs(len(ann.values) - n_video) > self.frame_tolerance:
            return skip(e.name, "length mismatch", f"{e.annotation_path}: {len(ann.values)} annotated frames but the "
                        f"video {e.video_path} has {n_video} (at most {self.frame_tolerance} apart accepted)")
        n = min(len(ann.values), n_video)
        if not self.cache.has(e.name):
            return skip(e.name, "not in cache", f"{e.video_path}: no face crops for {e.name!r} in the cache "
                        f"{self.cache.root} (run `pkdot prepare`)")
        try:
            cached = self.cache.read(e.name)
        except DatasetError as exc:
            return skip(e.name, "cache unreadable", f"{e.video_path}: {exc}")
        if not cached.face_found:
            return skip(e.name, "no face", f"{e.video_path}: no face was found for {e.name!r} in any frame")
        order = np.argsort(cached.frame_index, kind="stable")
        frames = cached.frame_index[order].astype(np.int64)  # (M,) sorted
        valid = ann.valid[:n]
        has_crop = np.zeros(n, bool)
        has_crop[frames[frames < n]] = True
        targets = np.flatnonzero(valid & has_crop)[:: self.target_stride]
        if len(targets) == 0:
            return skip(e.name, "no valid label", f"{e.annotation_path}: no frame with a valid label and a face crop")
        return _Video(e, ann.values[:n], valid, frames, order.astype(np.int64), targets, fps, cached.crops)

    @property
    def entries(self) -> list[AffWild2Entry]:
        return [v.entry for v in self._videos]

    @property
    def skipped(self) -> list[SkippedSample]:
        """SkippedSample(key, reason, detail) for every skipped annotation."""
        return self._skips.items

    @property
    def skip_counts(self) -> dict[str, int]:
        return self._skips.counts()

    def __len__(self) -> int:
        return int(self._ends[-1])

    def _locate(self, i: int) -> tuple[_Video, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} of {len(self)}")
        i %= len(self)
        v = int(np.searchsorted(self._ends, i, side="right"))
        start = int(self._ends[v - 1]) if v else 0
        return self._videos[v], int(self._videos[v].targets[i - start])

    def locate(self, i: int) -> tuple[AffWild2Entry, int]:
        """(entry, target frame) of item i."""
        v, target = self._locate(i)
        return v.entry, target

    def __getitem__(self, i: int) -> dict:
        v, target = self._locate(i)
        entry = v.entry
        clip = target - self.stride * np.arange(self.num_frames - 1, -1, -1)  # (T,) frame indices, last = target
        inside = clip >= 0
        pos = np.maximum(np.searchsorted(v.cached_frames, clip, side="right") - 1, 0)  # (T,) nearest earlier crop
        crops = np.asarray(v.crops[v.cached_rows[pos]])  # (T, S, S, 3) uint8
        video = (augmented_model_input(crops, TorchDraws(), self.spec, self.photometric) if self.augment
                 else to_model_input(crops, self.spec))  # (T, 3, S, S); augmented: reproducible from torch's RNG
        safe = np.clip(clip, 0, len(v.labels) - 1)
        mask = inside & v.valid[safe]  # (T,)
        va_seq = np.where(mask[:, None], v.labels[safe], 0.0).astype(np.float32)  # (T, 2)
        item = {"video": torch.from_numpy(video),
                "va": torch.from_numpy(v.labels[target].copy()),  # (2,)
                "va_seq": torch.from_numpy(va_seq), "mask": torch.from_numpy(mask),
                "subject": entry.name, "key": entry.name, "frame": target}
        if self.with_audio:
            item["audio"] = torch.from_numpy(self._mel(i % len(self), entry, target / v.fps)[None])  # (1, n_mels, F)
        return item

    def _mel(self, i: int, entry: AffWild2Entry, t: float) -> np.ndarray:
        """Item i's log-mel window centred on time t (s): it does not change from epoch to epoch, so the first
        items' windows are kept, up to mel_cache_mb (a fixed set: an LRU would keep nothing on epoch-long cycles)."""
        mel = self._mels.get(i)
        if mel is None:
            audio = audio_window(self._video_audio(entry), self.sample_rate, t, self.audio_window_s)
            mel = log_mel(audio, self.sample_rate, self.n_mels, self.audio_window_s)  # (n_mels, F)
            if mel.nbytes <= self._mel_budget:
                self._mels[i] = mel
                self._mel_budget -= mel.nbytes
        return mel.copy()

    def _video_audio(self, entry: AffWild2Entry) -> np.ndarray:
        """The whole recording of the entry's video, float32 (n,) at sample_rate: from the audio cache, or decoded
        once per process."""
        audio = self._audio.get(entry.video_name)
        if audio is None:
            stored = audio_cache_path(self.cache, entry.video_name, self.sample_rate)
            try:
                audio = np.load(stored, mmap_mode="r") if stored.is_file() else decode_audio(entry.video_path,
                                                                                            self.sample_rate)
            except (MediaError, OSError, ValueError) as exc:
                source = stored if stored.is_file() else entry.video_path
                raise DatasetError(f"{source}: audio unreadable: {exc}") from None
            self._audio[entry.video_name] = audio
            if self.audio_cache_videos is not None:
                while len(self._audio) > max(self.audio_cache_videos, 1):
                    self._audio.popitem(last=False)
        self._audio.move_to_end(entry.video_name)
        return audio


def audio_cache_path(cache: CropCache, video_name: str, sample_rate: int = AUDIO_RATE_HZ) -> Path:
    """Where `cache_audio` stores a video's decoded audio inside the crop cache."""
    if "/" in video_name or video_name in (".", ".."):
        raise ValueError(f"invalid video name {video_name!r}")
    return cache.root / "audio" / str(sample_rate) / f"{video_name}.npy"


def cache_audio(entries: Sequence[AffWild2Entry], cache: CropCache, sample_rate: int = AUDIO_RATE_HZ,
                strict: bool = False) -> dict[str, str]:
    """Decode the audio of every video of `entries` once into the crop cache (float32 .npy, mono, sample_rate),
    so datasets memory-map it instead of each DataLoader worker holding its own decoded copy. Resumable: videos
    already stored are kept. Returns {video path: problem} for videos whose audio could not be decoded (strict:
    DatasetError on the first)."""
    problems: dict[str, str] = {}
    for video_name, video_path in {e.video_name: e.video_path for e in entries}.items():
        target = audio_cache_path(cache, video_name, sample_rate)
        if target.is_file():
            continue
        try:
            audio = decode_audio(video_path, sample_rate)
        except MediaError as exc:
            if strict:
                raise DatasetError(f"{video_path}: audio unreadable: {exc}") from None
            log.warning("no audio cached for %s: %s", video_path, exc)
            problems[str(video_path)] = str(exc)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, audio)
        tmp.replace(target)
    return problems
