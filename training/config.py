"""Typed run configuration: dataclasses with commented defaults, one small TOML file per experiment in `configs/`,
command-line overrides (`--set optim.lr=3e-4`), and the resolved configuration saved as `config.json` in every run.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pkdot_contract.tasks import TASKS
from training.errors import ConfigError


@dataclass
class DataConfig:
    dataset: str = "biovid"  # "biovid" | "affwild2"
    root: str = ""  # dataset root in its release layout (only read)
    cache: str = ""  # face-crop cache written by `pkdot prepare`
    pain_classes: str = "five"  # BioVid: "five" (BL1, PA1..PA4 -> 0..4) | "binary" (BL1 vs PA4)
    num_frames: int = 8  # T frames per clip (TSN sampling over the 5.5 s BioVid window; a window for Aff-Wild2)
    frame_stride: int = 2  # Aff-Wild2: frames between clip frames
    channels: list[str] = field(default_factory=lambda: ["gsr", "emg_trapezius"])  # BioVid privileged channels
    signal: str = "raw"  # BioVid privileged transform: "raw" | "spectrogram"
    signal_norm: str = "zscore"  # per window: "zscore" | "baseline" (minus the first 0.5 s; keeps amplitude) | "none"
    split: str = "subject-kfold"  # "subject-kfold" | "loso" | "sample-stratified" (released code; leaks subjects)
    folds: int = 4  # k of the k-fold split
    fold: int = 0  # which fold is the test fold
    val_fraction: float = 0.25  # share of the training subjects held out for validation (epoch selection)
    split_seed: int = 0
    target_stride: int = 4  # Aff-Wild2: every n-th annotated frame is a clip target (1: all)
    workers: int = 0  # DataLoader worker processes
    augment: bool = True  # training clips: random horizontal flip and a shift of up to 2 px (the whole clip alike)
    photometric: float = 0.0  # with augment: strength of random contrast, brightness and colour gains per clip (0: off)


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # "adam" | "adamw" | "sgd"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    epochs: int = 20
    batch_size: int = 32
    drop_last: bool = True  # PKDOT's structure loss needs full batches
    schedule: str = "plateau"  # "plateau" (ReduceLROnPlateau below) | "cosine" (warm-up, then cosine decay per step)
    warmup_epochs: float = 1.0  # cosine: epochs of linear warm-up from lr/10
    plateau_patience: int = 3  # ReduceLROnPlateau on the validation metric
    plateau_factor: float = 0.5
    grad_clip: float = 5.0
    bn_recalibration_batches: int = 16  # precise BatchNorm statistics before each evaluation (0: off)
    validate_from: int = 1  # first epoch validated (and eligible as the best); earlier ones only train; the last
    # epoch is always validated
    ema_decay: float = 0.0  # > 0: the model validated and kept is an exponential moving average of the weights over
    # training steps (decay per step, warmed up as min(decay, (1 + t) / (10 + t))); 0: the weights themselves
    ordinal_sigma: float = 0.0  # pain, > 0: soft targets exp(-(k - y)^2 / 2 sigma^2) over the ordered levels
    precision: str = "fp32"  # "bf16": training forward passes under bf16 autocast (weights and evaluation stay fp32)


@dataclass
class KDConfig:
    method: str = "none"  # a key of training.losses.KD_LOSSES
    # "cached": the teacher's outputs on each training clip's evaluation view, computed once per run; "online": the
    # teacher runs on every augmented batch beside the student (the released code's way; slower). See
    # training/teacher_targets.py.
    teacher: str = "cached"
    weight: float = 0.6  # λ in loss = task_loss + λ·kd_loss (PKDOT paper: 0.6)
    # options per method, λ included where a method has its own: {pkdot: {k: 30}, fitnet: {weight: 1.0}}
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunConfig:
    kind: str = "teacher"  # "teacher" | "tnet" | "student"
    task: str = "pain"  # "pain" | "affect"
    model: dict[str, Any] = field(default_factory=dict)  # {"name": <training.models registry key>, **kwargs}
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # per kind, used when `model` is empty
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    teacher_run: str = ""  # students and T-Nets: the teacher's run folder
    tnet_run: str = ""  # paper student: the T-Net's run folder (loaded, unlike the released code)
    seed: int = 0
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    threads: int = 0  # torch intra-op threads (0: torch's default)
    out: str = "runs/run"  # run folder

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        sub = fields[name].default_factory if fields[name].default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            kwargs[name] = _from_dict(sub, value, f"{where}.{name}")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`section.key=value` strings (values parsed as Python literals, else strings) applied to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr=3e-4)")
        key, text = item.split("=", 1)
        node = values
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[leaf] = _parse_value(text.strip())
    return values


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                **top: Any) -> RunConfig:
    """Defaults <- TOML file <- keyword arguments <- `--set` overrides. Raises ConfigError naming the problem."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    for key, value in top.items():
        if value is not None:
            apply_overrides(values, [f"{key}={value!r}"])
    apply_overrides(values, overrides or [])
    cfg = _from_dict(RunConfig, values, str(path or "config"))
    _validate(cfg)
    return cfg


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validate(cfg: RunConfig) -> None:
    checks = [
        (cfg.kind in ("teacher", "tnet", "student"), f"kind must be teacher, tnet or student, not {cfg.kind!r}"),
        (cfg.task in TASKS, f"task must be pain or affect, not {cfg.task!r}"),
        (cfg.data.dataset in ("biovid", "affwild2"), "data.dataset must be biovid or affwild2"),
        (cfg.data.pain_classes in ("five", "binary"), "data.pain_classes must be five or binary"),
        (cfg.optim.epochs >= 1 and cfg.optim.batch_size >= 2, "optim.epochs >= 1 and optim.batch_size >= 2"),
        (cfg.optim.optimizer in ("adam", "adamw", "sgd"), "optim.optimizer must be adam, adamw or sgd"),
        (cfg.optim.precision in ("fp32", "bf16"), "optim.precision must be fp32 or bf16"),
        (cfg.kd.teacher in ("cached", "online"), "kd.teacher must be cached or online"),
        (cfg.optim.schedule in ("plateau", "cosine"), "optim.schedule must be plateau or cosine"),
        (cfg.optim.lr > 0, "optim.lr must be positive"),
        (isinstance(cfg.optim.validate_from, int) and not isinstance(cfg.optim.validate_from, bool)
         and cfg.optim.validate_from >= 1,
         f"optim.validate_from must be an epoch >= 1, not {cfg.optim.validate_from!r}"),
        (isinstance(cfg.kd.params, dict) and all(isinstance(v, dict) for v in cfg.kd.params.values()),
         f"kd.params must map each method to its options (e.g. kd.params.pkdot.k=8), not {cfg.kd.params!r}"),
        (0.0 <= cfg.data.photometric <= 2.0, "data.photometric must be in [0, 2]"),
        (_is_real(cfg.optim.ema_decay) and 0.0 <= cfg.optim.ema_decay < 1.0, "optim.ema_decay must be in [0, 1)"),
        (cfg.kind == "teacher" or bool(cfg.teacher_run),
         f"a {cfg.kind} run needs teacher_run (the teacher's run folder: --teacher RUN)"),
        (0 <= cfg.data.fold < cfg.data.folds or cfg.data.split == "loso", "data.fold must be in [0, data.folds)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


# Options a stopped run may resume with changed: where things are, how the run is executed, and more epochs.
RESUMABLE_CHANGES = ("out", "device", "threads", "data.root", "data.cache", "optim.epochs")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("params",):
            flat |= _flatten(v, f"{prefix}{k}.")
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def config_changes(saved: dict, new: dict) -> list[str]:
    """'key: old -> new' for every option that differs between a run's saved config and a new one, except those a
    resumed run may change (RESUMABLE_CHANGES)."""
    a, b = _flatten(saved), _flatten(new)
    defaults = _flatten(json.loads(json.dumps(RunConfig().to_dict(), default=str)))
    a = {**{k: v for k, v in defaults.items() if k in b}, **a}  # an option added since the run started: its default
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in RESUMABLE_CHANGES and json.dumps(a.get(k), sort_keys=True, default=str)
            != json.dumps(b.get(k), sort_keys=True, default=str)]

