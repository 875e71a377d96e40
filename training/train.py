"""Assemble and run the three kinds of training run from a RunConfig, and load finished runs back."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn as nn

from training.allocator import keep_freed_memory
from training.config import RunConfig
from training.data.build import build_datasets
from training.engine import Trainer, set_seed
from training.errors import ConfigError
from training.models import MODELS, create_model
from training.objectives import DistillObjective, TeacherObjective, TNetObjective
from training.teacher_targets import TeacherTargets

log = logging.getLogger(__name__)

DEFAULT_MODEL = {"teacher": "teacher", "tnet": "tnet", "student": "streaming_student"}


def model_options(cfg: RunConfig, num_classes: int) -> tuple[str, dict]:
    """The registry name and constructor options of the run's model, with task-derived defaults filled in."""
    options = dict(cfg.model or cfg.models.get(cfg.kind, {}))
    name = options.pop("name", DEFAULT_MODEL[cfg.kind])
    if name == "tnet":
        return name, options
    options.setdefault("task", cfg.task)
    if cfg.task == "pain":
        options.setdefault("num_classes", num_classes)
    if name == "teacher" and cfg.task == "pain":
        privileged = dict(options.get("privileged_cfg") or {})
        privileged.setdefault("kind", cfg.data.signal)
        privileged.setdefault("in_channels", len(cfg.data.channels))
        options["privileged_cfg"] = privileged
    return name, options


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    name, options = model_options(cfg, num_classes)
    return create_model(name, **options)


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[RunConfig, nn.Module]:
    """A finished run's configuration and its best model (eval mode)."""
    run_dir = Path(run_dir)
    for needed in ("config.json", "best.pt"):
        if not (run_dir / needed).is_file():
            raise ConfigError(f"{run_dir} is not a finished run folder (no {needed})")
    cfg = _config_from_json(run_dir / "config.json")
    num_classes = (5 if cfg.data.pain_classes == "five" else 2) if cfg.task == "pain" else 0
    model = build_model(cfg, num_classes)
    state = torch.load(run_dir / "best.pt", map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    return cfg, model.eval()


def _config_from_json(path: Path) -> RunConfig:
    from training.config import _from_dict

    return _from_dict(RunConfig, json.loads(path.read_text()), str(path))


def _teacher_for(cfg: RunConfig) -> nn.Module:
    if not cfg.teacher_run:
        raise ConfigError(f"a {cfg.kind} run needs teacher_run (the teacher's run folder, --teacher RUN)")
    tcfg, teacher = load_run(cfg.teacher_run, cfg.device)
    if tcfg.task != cfg.task:
        raise ConfigError(f"the teacher in {cfg.teacher_run} is a {tcfg.task} model, this run is {cfg.task}")
    return teacher


def _check_tnet_run(cfg: RunConfig) -> None:
    """A student with a T-Net (the paper's student) distils only with its trained T-Net loaded (DESIGN.md section 2:
    the released code built it but never loaded it, so it trained a random one); no other student takes one."""
    name, _ = model_options(cfg, 0)
    has_tnet = hasattr(MODELS.get(name), "load_tnet")
    if has_tnet and not cfg.tnet_run:
        raise ConfigError(f"model {name!r} hallucinates the privileged features with a T-Net that must be trained "
                          "first and loaded: run `pkdot train-tnet --teacher TEACHER_RUN --out TNET_RUN`, then pass "
                          "--tnet TNET_RUN (tnet_run); without it the T-Net would stay random")
    if cfg.tnet_run and not has_tnet:
        raise ConfigError("tnet_run is set but the student has no T-Net (use model.name = 'paper_student')")


def run_training(cfg: RunConfig, progress: bool = True, max_steps: int | None = None) -> dict:
    """Train a teacher, a T-Net or a student as configured; returns the run's metrics summary."""
    if cfg.kind == "student":
        _check_tnet_run(cfg)
    set_seed(cfg.seed)
    keep_freed_memory()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # a student needs its teacher's input only where it runs the teacher beside it on every batch
    online = cfg.kind == "student" and cfg.kd.method != "none" and cfg.kd.teacher == "online"
    data = build_datasets(cfg.data, cfg.task, privileged=cfg.kind != "student" or online)
    if cfg.kind == "teacher":
        objective = TeacherObjective(build_model(cfg, data.num_classes), cfg.task, cfg.optim.ordinal_sigma)
    elif cfg.kind == "tnet":
        teacher = _teacher_for(cfg)
        options = {"in_dim": teacher.visual_dim, "out_dim": teacher.privileged_dim,
                   **(cfg.model or cfg.models.get("tnet", {}))}
        options.pop("name", None)
        kind = options.pop("loss", "mmd")
        cfg.model = {"name": "tnet", **options}
        objective = TNetObjective(create_model("tnet", **options), teacher, kind)
    else:
        teacher = _teacher_for(cfg)
        student = build_model(cfg, data.num_classes)
        if cfg.tnet_run:
            student.load_tnet(_tnet_state(cfg.tnet_run))
        targets = None
        if cfg.kd.method != "none" and cfg.kd.teacher == "cached":
            targets = TeacherTargets(teacher, data.train_eval(privileged=True), cfg.optim.batch_size,
                                     torch.device(cfg.device))
        objective = DistillObjective(student, teacher, cfg.task, cfg.kd.method, cfg.kd.weight,
                                     cfg.kd.params.get(cfg.kd.method, {}), targets, cfg.optim.ordinal_sigma)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "split.json").write_text(json.dumps(data.split.keys(), indent=1) + "\n")
    trainer = Trainer(cfg, objective, data.num_classes, progress=progress)
    summary = trainer.fit(data.train, data.val, data.test, max_steps=max_steps)
    summary["skipped"] = {name: getattr(ds, "skip_counts", {}) for name, ds in
                          (("train", data.train), ("val", data.val), ("test", data.test))}
    return summary


def _tnet_state(run_dir: str) -> dict:
    path = Path(run_dir) / "best.pt"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a finished T-Net run (no best.pt)")
    return torch.load(path, map_location="cpu", weights_only=True)["model"]
