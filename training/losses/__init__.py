"""Losses: the PKDOT distillation loss, the distillation baselines, and the task and T-Net losses.

Every distillation loss is called as ``loss(teacher_emb, student_emb, teacher_logits=None, student_logits=None)``
and returns a weighted scalar; the teacher is detached inside, so gradients reach the student only.

    KD_LOSSES["pkdot"]                   the method (DESIGN.md §2)
    create_kd_loss("rkd", angle_weight=50.0)
"""

import inspect

from pkdot_contract.tasks import REGRESSION_TASKS, TASKS
from training.errors import ConfigError
from training.losses.base import KDLoss
from training.losses.fitnet import FitNetLoss, fitnet_loss
from training.losses.kd import LogitKDLoss, kd_loss
from training.losses.mmd import TNetLoss, mmd_loss, tnet_loss
from training.losses.no_kd import NoKDLoss
from training.losses.pkd import PKDLoss, pkd_loss
from training.losses.pkdot import PKDOTLoss, anchor_clouds, pkdot_loss
from training.losses.pkt import PKTLoss, pkt_loss
from training.losses.rkd import RKDLoss, rkd_loss
from training.losses.sinkhorn import entropic_ot, sinkhorn_divergence
from training.losses.smpkd import SMPKDLoss, smpkd_loss
from training.losses.task import (
    CCCLoss,
    OrdinalCrossEntropy,
    ccc,
    ccc_loss,
    create_task_loss,
    cross_entropy_loss,
    ordinal_targets,
)

KD_LOSSES: dict[str, type[KDLoss]] = {
    "none": NoKDLoss,  # visual-only student: task loss alone
    "kd": LogitKDLoss,  # Hinton logit KD (classification only)
    "fitnet": FitNetLoss,  # FitNets hint: MSE on embeddings
    "pkd": PKDLoss,  # M2PKD: 1 − cos(z_t, z_s)
    "smpkd": SMPKDLoss,  # ‖A_t − A_s‖_F / B on cosine matrices
    "rkd": RKDLoss,  # relational KD: distance + angle
    "pkt": PKTLoss,  # probabilistic knowledge transfer
    "pkdot": PKDOTLoss,  # PKDOT: Sinkhorn divergence on anchor similarity profiles
}


def create_kd_loss(name: str, *, task: str | None = None, **kwargs: object) -> KDLoss:
    """The distillation loss ``name`` from ``KD_LOSSES`` built with ``kwargs``; ConfigError for a bad name or option.

    With ``task`` given, a logit loss (``requires_logits``) is refused for a regression task ("affect").
    """
    if name not in KD_LOSSES:
        raise ConfigError(f"unknown distillation loss {name!r}; choose one of {sorted(KD_LOSSES)}")
    cls = KD_LOSSES[name]
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; expected one of {TASKS}")
    if task is not None and cls.requires_logits and task in REGRESSION_TASKS:
        raise ConfigError(f"{name!r} distils class logits and does not apply to the regression task {task!r}")
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        raise ConfigError(f"bad option for distillation loss {name!r}: {err}") from None
    return cls(**kwargs)


__all__ = [
    "KD_LOSSES",
    "CCCLoss",
    "FitNetLoss",
    "KDLoss",
    "LogitKDLoss",
    "NoKDLoss",
    "OrdinalCrossEntropy",
    "PKDLoss",
    "PKDOTLoss",
    "PKTLoss",
    "RKDLoss",
    "SMPKDLoss",
    "TNetLoss",
    "anchor_clouds",
    "ccc",
    "ccc_loss",
    "create_kd_loss",
    "create_task_loss",
    "cross_entropy_loss",
    "entropic_ot",
    "fitnet_loss",
    "kd_loss",
    "mmd_loss",
    "ordinal_targets",
    "pkd_loss",
    "pkdot_loss",
    "pkt_loss",
    "rkd_loss",
    "sinkhorn_divergence",
    "smpkd_loss",
    "tnet_loss",
]
