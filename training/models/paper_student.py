"""PaperStudent: the paper's student — it hallucinates the privileged features it never sees.

    v = Visual(clip),  p̂ = TNet(v),  z = AttentionFusion(v, p̂) (a fresh copy),  prediction = Head(z)

The T-Net is trained beforehand on the teacher's (visual, privileged) features and must be loaded with
`load_tnet` before distillation — the released code built it but never loaded its weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from training.models.fusion import AttentionFusion
from training.models.heads import TASK_OUTPUT, check_task, create_head
from training.models.tnet import TNet
from training.models.visual import create_visual_backbone
from training.models.weights import LoadReport, load_state_dict_checked, read_state_dict


class PaperStudent(nn.Module):
    """Visual backbone → T-Net → fusion → head.

    Args:
        task: "pain" (output `logits`) or "affect" (output `va`).
        num_classes: pain classes, 5 or 2 (ignored for affect; default 5).
        visual: visual backbone, "streaming" (default) or "r3d18"; visual_cfg: its keyword arguments.
        privileged_dim: size of the hallucinated privileged features — the teacher's (default 512).
        tnet_hidden: T-Net hidden sizes (default (256, 128, 256)).
        fusion_dim, num_tokens, num_heads, legacy_batch_mixing: AttentionFusion options (defaults 512, 4, 4, False).
        dropout: dropout of fusion and head (default 0.1).

    forward(clip (B, T, 3, H, W)) → {"embedding": z (B, fusion_dim), "logits" (B, num_classes) or "va" (B, 2),
    "visual": v (B, visual_dim), "privileged": p̂ (B, privileged_dim), "gate": g (B, fusion_dim)}.
    """

    def __init__(
        self,
        task: str = "pain",
        num_classes: int = 5,
        visual: str = "streaming",
        visual_cfg: dict | None = None,
        privileged_dim: int = 512,
        tnet_hidden: tuple[int, ...] = (256, 128, 256),
        fusion_dim: int = 512,
        num_tokens: int = 4,
        num_heads: int = 4,
        dropout: float = 0.1,
        legacy_batch_mixing: bool = False,
    ) -> None:
        super().__init__()
        self.task = check_task(task)
        self.output_key = TASK_OUTPUT[task]
        self.visual = create_visual_backbone(visual, **(visual_cfg or {}))
        self.visual_dim, self.privileged_dim = self.visual.out_dim, privileged_dim
        self.tnet = TNet(self.visual_dim, privileged_dim, tnet_hidden)
        self.fusion = AttentionFusion(
            self.visual_dim, privileged_dim, fusion_dim, num_tokens, num_heads, dropout, legacy_batch_mixing
        )
        self.head = create_head(task, fusion_dim, num_classes, dropout)

    def load_tnet(self, source: str | Path | dict[str, torch.Tensor] | TNet, freeze: bool = True) -> LoadReport:
        """Load the trained T-Net (a file, a state dict or a TNet); freeze it (default) so distillation keeps it.

        Raises CheckpointError when keys or shapes do not match this student's T-Net.
        """
        if isinstance(source, TNet):
            state, name = source.state_dict(), "TNet module"
        elif isinstance(source, dict):
            state, name = {k.removeprefix("module."): v for k, v in source.items()}, "T-Net state dict"
        else:
            state, name = read_state_dict(source), str(source)
        report = load_state_dict_checked(self.tnet, state, strict=True, head_prefixes=(), source=name)
        self.tnet.requires_grad_(not freeze)
        return report

    def forward(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self.visual(clip)  # (B, visual_dim)
        p_hat = self.tnet(v)  # (B, privileged_dim): hallucinated privileged features
        fused = self.fusion(v, p_hat)
        z = fused["embedding"]  # (B, fusion_dim)
        return {"embedding": z, self.output_key: self.head(z), "visual": v, "privileged": p_hat, "gate": fused["gate"]}
