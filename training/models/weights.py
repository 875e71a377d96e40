"""Loading local weight files (.pt / .pth state dicts) into the project's backbones.

Nothing is downloaded: a user who has, say, torchvision's Kinetics-400 `r3d_18` checkpoint on disk passes its
path. `read_state_dict` accepts a bare state dict, one nested under "state_dict" / "model_state_dict" / "model"
(training checkpoints), and strips the "module." prefix that DataParallel / DistributedDataParallel add.
`load_visual_weights` checks keys and shapes against the model and says precisely what does not match; a
classifier (`fc.*`) whose shape differs — another class count — is dropped and keeps its fresh initialisation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from training.errors import ConfigError

logger = logging.getLogger(__name__)

NESTED_KEYS = ("state_dict", "model_state_dict", "model")
BENIGN_MISSING = ("num_batches_tracked",)  # BatchNorm counters absent from older checkpoints
MAX_LISTED = 10


class CheckpointError(ConfigError):
    """A weight file that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)  # keys copied into the model
    missing: list[str] = field(default_factory=list)  # model keys the file lacks (left as initialised)
    unexpected: list[str] = field(default_factory=list)  # file keys the model lacks (ignored)
    dropped: list[str] = field(default_factory=list)  # classifier keys dropped (other class count)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", … ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


def _strip_prefix(key: str, prefix: str = "module.") -> str:
    while key.startswith(prefix):
        key = key[len(prefix) :]
    return key


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a local file, unwrapping training checkpoints and "module." prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or non-torch files
        raise CheckpointError(f"cannot read weight file {path}: {exc}") from exc
    while isinstance(obj, dict):
        nested = next((k for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if nested is None:
            break
        obj = obj[nested]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return {_strip_prefix(k): v for k, v in obj.items()}


def load_state_dict_checked(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    strict: bool = True,
    head_prefixes: tuple[str, ...] = ("fc.",),
    source: str = "state dict",
) -> LoadReport:
    """Copy `state` into `model` after checking keys and shapes (see load_visual_weights)."""
    own = model.state_dict()
    report = LoadReport()
    mismatched: list[str] = []
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        is_head = key.startswith(head_prefixes)
        if key not in own:
            (report.dropped if is_head else report.unexpected).append(key)
        elif own[key].shape != value.shape:
            if is_head:
                report.dropped.append(key)
            else:
                mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        else:
            usable[key] = value
    dropped_head = bool(report.dropped)
    for key in own:
        if key in usable or key.endswith(BENIGN_MISSING) or (dropped_head and key.startswith(head_prefixes)):
            continue
        report.missing.append(key)
    if mismatched:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: shape mismatch in {_listing(mismatched)}")
    if strict and (report.missing or report.unexpected):
        problems = []
        if report.missing:
            problems.append(f"missing keys ({len(report.missing)}): {_listing(report.missing)}")
        if report.unexpected:
            problems.append(f"unexpected keys ({len(report.unexpected)}): {_listing(report.unexpected)}")
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    if report.dropped:
        logger.info("%s: dropped classifier keys %s (class count differs)", source, _listing(report.dropped))
    if report.missing or report.unexpected:
        logger.warning(
            "%s: %d missing keys (%s), %d unexpected keys (%s)",
            source,
            len(report.missing),
            _listing(report.missing),
            len(report.unexpected),
            _listing(report.unexpected),
        )
    return report


def load_visual_weights(
    model: nn.Module, path: str | Path, *, strict: bool = True, head_prefixes: tuple[str, ...] = ("fc.",)
) -> LoadReport:
    """Load a local .pt/.pth state dict (e.g. torchvision's r3d_18 checkpoint) into `model`.

    Shape mismatches always raise CheckpointError (naming each key and both shapes), except for the classifier
    keys under `head_prefixes`, which are dropped when their shape differs or the model has no classifier.
    Missing and unexpected keys raise with strict=True (default) and are logged and reported otherwise.
    """
    return load_state_dict_checked(
        model, read_state_dict(path), strict=strict, head_prefixes=head_prefixes, source=str(path)
    )
