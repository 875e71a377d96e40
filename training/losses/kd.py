"""Logit distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015).

    L_KD = T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)),   averaged over the batch

The T² factor keeps the gradient scale independent of T (Hinton et al., §2). Classification only: it reads the
logits, so it does not apply to the affect (valence/arousal regression) task.
"""

import math

import torch
import torch.nn.functional as F

from training.errors import ConfigError
from training.losses.base import KDLoss


def kd_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, *, temperature: float = 4.0) -> torch.Tensor:
    """Hinton KD between (B, C) logits; a scalar. The teacher is detached."""
    if teacher_logits.ndim != 2 or teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"logits must be two (batch, classes) tensors of one shape, got {tuple(teacher_logits.shape)} "
            f"and {tuple(student_logits.shape)}"
        )
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)  # (B, C)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)  # (B, C)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)  # () Σ p_t (log p_t − log p_s) / B
    return kl * temperature**2


class LogitKDLoss(KDLoss):
    """``weight``·L_KD with temperature T (4 by default). Needs both logits; ConfigError without them."""

    requires_logits = True

    def __init__(self, weight: float = 1.0, temperature: float = 4.0) -> None:
        super().__init__(weight)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not math.isfinite(temperature):
            raise ConfigError(f"temperature must be a finite number > 0, got {temperature!r}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(
        self,
        teacher_emb: torch.Tensor,
        student_emb: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        student_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if teacher_logits is None or student_logits is None:
            raise ConfigError(
                "kd (logit distillation) needs teacher and student class logits; it applies to the classification "
                "task (pain) only — use a feature loss such as pkdot, pkd, rkd or pkt for affect"
            )
        return self.weight * kd_loss(teacher_logits, student_logits, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}"
