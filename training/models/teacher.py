"""Teacher: the multimodal model whose joint-embedding structure PKDOT distils into the visual-only student.

    v = Visual(clip),  p = Privileged(signal),  z = AttentionFusion(v, p),  prediction = Head(z)

Privileged modality: biosignals for pain (BioVid), audio for affect (Aff-Wild2).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from training.models.audio import AudioEncoder
from training.models.biosignal import BiosignalEncoder
from training.models.fusion import AttentionFusion
from training.models.heads import TASK_OUTPUT, check_task, create_head
from training.models.registry import build
from training.models.visual import create_visual_backbone

PRIVILEGED_ENCODERS = {"biosignal": BiosignalEncoder, "audio": AudioEncoder}
DEFAULT_PRIVILEGED = {"pain": "biosignal", "affect": "audio"}


def create_privileged_encoder(name: str, **cfg) -> nn.Module:
    return build(PRIVILEGED_ENCODERS, name, "privileged encoder", cfg)


class Teacher(nn.Module):
    """Visual + privileged encoders, attention fusion and a task head.

    Args:
        task: "pain" (output `logits`) or "affect" (output `va`).
        num_classes: pain classes, 5 or 2 (ignored for affect; default 5).
        visual: visual backbone, "streaming" (default) or "r3d18".
        visual_cfg: keyword arguments of the visual backbone (e.g. {"weights": "r3d_18.pth"} for r3d18).
        privileged: "biosignal" or "audio" (default: biosignal for pain, audio for affect).
        privileged_cfg: keyword arguments of the privileged encoder (e.g. {"kind": "raw", "in_channels": 3}).
        fusion_dim, num_tokens, num_heads, legacy_batch_mixing: AttentionFusion options (defaults 512, 4, 4, False).
        dropout: dropout of fusion and head (default 0.1).
        modality_dropout: while training, the share of samples whose privileged features are zeroed (default 0):
            a teacher that can always lean on the easy privileged signal never learns to read the face, and then
            fuses nothing; this makes it learn both.

    forward(clip (B, T, 3, H, W), signal) with signal (B, 1, F, T') for spectrograms, (B, C, L) for raw
    biosignals, (B, 1, 64, frames) for log-mel audio → {"embedding": z (B, fusion_dim), "logits" (B, num_classes)
    or "va" (B, 2), "visual": v (B, visual_dim), "privileged": p (B, privileged_dim), "gate": g (B, fusion_dim)}.
    `visual` and `privileged` are the backbone features the T-Net learns to map (v → p).
    """

    def __init__(
        self,
        task: str = "pain",
        num_classes: int = 5,
        visual: str = "streaming",
        visual_cfg: dict | None = None,
        privileged: str | None = None,
        privileged_cfg: dict | None = None,
        fusion_dim: int = 512,
        num_tokens: int = 4,
        num_heads: int = 4,
        dropout: float = 0.1,
        legacy_batch_mixing: bool = False,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), not {modality_dropout}")
        self.modality_dropout = modality_dropout
        self.task = check_task(task)
        self.output_key = TASK_OUTPUT[task]
        self.visual = create_visual_backbone(visual, **(visual_cfg or {}))
        self.privileged = create_privileged_encoder(privileged or DEFAULT_PRIVILEGED[task], **(privileged_cfg or {}))
        self.visual_dim, self.privileged_dim = self.visual.out_dim, self.privileged.out_dim
        self.fusion = AttentionFusion(
            self.visual_dim, self.privileged_dim, fusion_dim, num_tokens, num_heads, dropout, legacy_batch_mixing
        )
        self.head = create_head(task, fusion_dim, num_classes, dropout)

    def forward(self, clip: torch.Tensor, signal: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self.visual(clip)  # (B, visual_dim)
        p = self.privileged(signal)  # (B, privileged_dim)
        if self.training and self.modality_dropout > 0:
            keep = torch.rand(p.shape[0], 1, device=p.device) >= self.modality_dropout  # (B, 1)
            p = p * keep
        fused = self.fusion(v, p)
        z = fused["embedding"]  # (B, fusion_dim)
        return {"embedding": z, self.output_key: self.head(z), "visual": v, "privileged": p, "gate": fused["gate"]}
