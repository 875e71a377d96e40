"""Reading a training run folder for export: the model, its preprocessing, its metrics, and real face crops.

A run folder, as the training loop (training.engine.Trainer) writes it:

    RUN_DIR/config.json    the resolved training.config.RunConfig: "task", "kind" ("student" | "teacher" are
                           exported), "model" ({"name": <MODELS key>, **options}, defaults filled in by
                           training.train.model_options), "data" ({"dataset", "root", "cache", "num_frames", ...})
    RUN_DIR/best.pt        {"model": state_dict, ...} — the weights of the best validation epoch
    RUN_DIR/metrics.json   {"val": {metric: value}, "test": {...}, ...} of the best epoch
    RUN_DIR/split.json     optional: {"train": [sample keys], "val": [...], "test": [...]}

The model is rebuilt by training.train.load_run (the loop's own code). The crop spec is the face-crop cache's;
the frame rate of the window is derived (BioVid: T frames spread over the 5.5 s sample; Aff-Wild2: video fps /
frame_stride); a teacher's privileged input follows data.signal / data.channels (BioVid) or the log-mel defaults
(Aff-Wild2). Optional keys of "data" override them: "crop" (a CropSpec dict), "frame_rate", "privileged" (a
pkdot_contract.manifest.PrivilegedPreprocessing dict, plus optional "shape"), "synthetic" (bool).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pkdot_contract.preprocessing.crop import CropSpec
from pkdot_contract.tasks import AFFECT_RANGES, PAIN_LABELS, TASKS, pain_labels
from training.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

BIOVID_WINDOW_S = 5.5  # every BioVid Part A sample is a 5.5 s window
DEFAULT_VIDEO_FPS = 30.0


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: is {path.parent} a training run folder?") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is unreadable: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return value


@dataclass
class RunFolder:
    path: Path
    config: dict
    metrics: dict

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunFolder:
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"run folder {path} not found")
        config = _read_json(path / "config.json")
        metrics = _read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
        run = cls(path, config, metrics)
        if not isinstance(config.get("data"), dict):
            raise ConfigError(f"{path / 'config.json'} has no 'data' section")
        if run.task not in TASKS:
            raise ConfigError(f"{path / 'config.json'}: task must be pain or affect, not {run.task!r}")
        if run.role not in ("student", "teacher"):
            raise ConfigError(f"{path}: a {run.role!r} run is not exported (only students and teachers are models "
                              "the service runs)")
        return run

    # -- the model ------------------------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.config.get("task", "")

    @property
    def role(self) -> str:
        return self.config.get("kind") or self.config.get("role", "")

    @property
    def data(self) -> dict:
        return self.config["data"]

    def load_model(self):
        """(RunConfig, model with the weights of RUN_DIR/best.pt, in eval mode), by training.train.load_run."""
        from training.train import load_run

        try:
            return load_run(self.path)
        except RuntimeError as exc:  # load_state_dict: missing, unexpected or mis-shaped weights
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"{self.path / 'best.pt'} does not fit the model of its config.json: {first}") from None

    def split_keys(self, part: str) -> list[str] | None:
        """Sample keys of one part ("train", "val", "test") from RUN_DIR/split.json, if the run has one."""
        path = self.path / "split.json"
        return list(_read_json(path).get(part, [])) if path.is_file() else None

    # -- preprocessing ----------------------------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path | None:
        cache = self.data.get("cache")
        return Path(cache) if cache else None

    def crop_spec(self) -> CropSpec:
        if self.data.get("crop"):
            return CropSpec.from_dict(self.data["crop"])
        if self.cache_dir is None:
            raise ConfigError(f"{self.path / 'config.json'}: data has neither 'crop' nor 'cache'; the crop spec is "
                              "unknown")
        from training.data.cache import CropCache

        try:
            return CropCache(self.cache_dir).spec
        except DatasetError as exc:
            raise ConfigError(f"the run's crop spec comes from its face-crop cache, which is unusable: {exc}") from None

    @property
    def window(self) -> int:
        return int(self.data.get("num_frames", 0)) or 1

    def frame_rate(self) -> float:
        if self.data.get("frame_rate"):
            return float(self.data["frame_rate"])
        if self.data.get("dataset") == "biovid":
            return self.window / BIOVID_WINDOW_S  # TSN: T frames spread over the 5.5 s sample
        fps = DEFAULT_VIDEO_FPS
        if self.cache_dir is not None and (self.cache_dir / "preprocessing.json").is_file():
            from training.data.cache import CropCache

            cache = CropCache(self.cache_dir)
            rates = [cache.read(k).fps for k in cache.keys()[:20]]
            rates = [r for r in rates if r > 0]
            fps = float(np.median(rates)) if rates else fps
        return fps / max(1, int(self.data.get("frame_stride", 1)))

    def privileged(self) -> dict | None:
        """The teacher's privileged input as `PrivilegedPreprocessing` fields (None for students)."""
        if self.role != "teacher":
            return None
        given = self.data.get("privileged")
        if isinstance(given, dict):
            return {k: v for k, v in given.items() if k != "shape"}
        if self.data.get("dataset") == "biovid":
            from pkdot_contract.preprocessing import signals

            transform = self.data.get("signal", "raw")
            params: dict = {"start_s": 0.0, "end_s": BIOVID_WINDOW_S,
                            "normalise": self.data.get("signal_norm", "zscore")}
            if transform == "spectrogram":
                params |= {"spectrogram_start_s": signals.SPECTROGRAM_START_S,
                           "spectrogram_end_s": signals.SPECTROGRAM_END_S, "nperseg": signals.SPECTROGRAM_NPERSEG,
                           "noverlap": signals.SPECTROGRAM_NOVERLAP, "nfft": signals.SPECTROGRAM_NFFT}
            return {"modality": "biosignal", "transform": transform, "channels": list(self.data.get("channels", [])),
                    "rate_hz": signals.BIOVID_RATE_HZ, "window_s": BIOVID_WINDOW_S, "params": params}
        from pkdot_contract.preprocessing import audio

        return {"modality": "audio", "transform": "log-mel", "channels": [], "rate_hz": float(audio.AUDIO_RATE_HZ),
                "window_s": audio.WINDOW_S, "params": {"n_mels": audio.N_MELS, "n_fft": audio.N_FFT,
                                                       "win_length": audio.WIN_LENGTH,
                                                       "hop_length": audio.HOP_LENGTH}}

    def privileged_shape(self) -> tuple[int, ...] | None:
        """Shape of one privileged input (without the batch axis), as the datasets produce it."""
        pre = self.privileged()
        if pre is None:
            return None
        given = self.data.get("privileged")
        if isinstance(given, dict) and given.get("shape"):
            return tuple(int(d) for d in given["shape"])
        rate, channels = pre["rate_hz"], max(1, len(pre["channels"]))
        if pre["transform"] == "raw":
            return channels, round(pre["window_s"] * rate)  # (C, L)
        if pre["transform"] == "spectrogram":
            from pkdot_contract.preprocessing.signals import spectrogram_shape

            return channels, *spectrogram_shape(rate)  # (C, F, T')
        from pkdot_contract.preprocessing.audio import log_mel_shape

        p = pre["params"]
        return 1, *log_mel_shape(int(rate), p.get("n_mels", 64), pre["window_s"], p.get("hop_length", 160))

    def preprocessing(self) -> dict:
        pre = {"crop": self.crop_spec().to_dict(), "window": self.window, "frame_rate": self.frame_rate(),
               "privileged": self.privileged()}
        if self.cache_dir is not None and (self.cache_dir / "preprocessing.json").is_file():
            from training.data.cache import CropCache

            pre["detector"] = CropCache(self.cache_dir).read_meta().get("detector", {})
        return pre

    def outputs(self, num_classes: int | None = None) -> dict:
        if self.task == "affect":
            return {"kind": "regression", "ranges": {k: list(r) for k, r in AFFECT_RANGES.items()}}
        n = num_classes or int(self.config["model"].get("num_classes", len(PAIN_LABELS)))
        try:
            labels = list(pain_labels(n))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return {"kind": "classification", "labels": labels}

    # -- provenance ---------------------------------------------------------------------------------------------------
    @property
    def synthetic(self) -> bool:
        return bool(self.data.get("synthetic", False))

    def split(self) -> str:
        d = self.data
        if isinstance(d.get("split"), str) and "fold" in d:
            return f"{d['split']} split, fold {d['fold']} of {d.get('folds', '?')}"
        return str(d.get("split", "not recorded"))

    def provenance(self) -> dict:
        git = self.config.get("git_commit") or (self.config.get("git") or {}).get("commit")
        return {"run": self.path.name, "config": self.config, "metrics": self.metrics,
                "dataset": {"name": self.data.get("dataset", "unknown")}, "synthetic": self.synthetic,
                "split": self.split(), "git_commit": git or "unknown"}


# -- real face crops for checks and calibration ---------------------------------------------------------------------


def clips_from_cache(cache_dir: str | os.PathLike, spec: CropSpec, window: int, max_clips: int = 64,
                     keys: list[str] | None = None, seed: int = 0) -> np.ndarray:
    """uint8 (N, window, S, S, 3): runs of `window` consecutive face crops, one per sample (spread over the
    cache's samples, or over `keys` — e.g. the run's training part), from frames where a face was found.
    Refuses a cache made with another crop spec."""
    from training.data.cache import CropCache

    cache = CropCache(cache_dir)
    if cache.spec != spec:
        raise ConfigError(f"the face-crop cache {cache_dir} was made with {cache.spec}, the model expects {spec}")
    available = cache.keys()
    if keys is not None:
        wanted = set(keys)
        available = [k for k in available if k in wanted]
    if not available:
        which = "no sample" if keys is None else f"none of the {len(keys)} requested samples"
        raise DatasetError(f"the face-crop cache {cache_dir} holds {which}")
    keys = available
    rng = np.random.default_rng(seed)
    picked = [keys[i] for i in np.linspace(0, len(keys) - 1, min(max_clips, len(keys))).round().astype(int)]
    clips = []
    for key in dict.fromkeys(picked):
        sample = cache.read(key)
        rows = np.flatnonzero(sample.has_face)
        if len(rows) == 0:
            continue
        start = int(rng.integers(0, max(1, len(rows) - window + 1)))
        take = rows[(start + np.arange(window)).clip(max=len(rows) - 1)]  # (window,) repeats the last if short
        clips.append(np.asarray(sample.crops[take]))
    if not clips:
        raise DatasetError(f"no face was found in any sample of the face-crop cache {cache_dir}")
    return np.stack(clips)  # (N, T, S, S, 3)


def astronaut_crops(spec: CropSpec, count: int = 8) -> np.ndarray:
    """uint8 (count, S, S, 3): real face crops of a public-domain photo (scikit-image's astronaut, NASA), through
    the service's path (FaceDetector + crop_face), slightly shifted so that the crops differ."""
    from skimage.data import astronaut

    from pkdot_contract.preprocessing.crop import crop_face
    from pkdot_contract.preprocessing.face import FaceBox, FaceDetector

    rgb = astronaut()
    with FaceDetector() as detector:
        box = detector.largest(rgb)
    if box is None:
        raise DatasetError("no face found in the reference photo")
    shifts = [(dx, dy) for dx in (-0.05, 0.0, 0.05) for dy in (-0.05, 0.05, 0.0)][:count]
    return np.stack([crop_face(rgb, FaceBox(box.x + dx * box.w, box.y + dy * box.h, box.w, box.h, box.score), spec)
                     for dx, dy in shifts])
