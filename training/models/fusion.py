"""AttentionFusion: the teacher's (and the paper student's) fusion of a visual and a privileged embedding.

PKDOT (Aslam et al., FG 2024), teacher fusion, done correctly:
    h_v = ReLU(W_v v),  h_p = ReLU(W_p p)                     per-modality heads, (B, D_in) → (B, dim)
    tokens: h → (B, n, dim/n)                                 n tokens per modality, batch first
    s_v = SelfAttn_v(h_v),  s_p = SelfAttn_p(h_p)             per-modality self-attention block
    c_v = CrossAttn_v(s_v ← s_p),  c_p = CrossAttn_p(s_p ← s_v)   bidirectional cross-attention
    g = σ(W_g [c_v; c_p]),  z = g ⊙ c_v + (1 − g) ⊙ c_p        sigmoid gate; z (B, dim) is what is distilled

Attention runs inside each sample (over its own n visual and n privileged tokens), so one sample's output never
depends on the others in the batch. `legacy_batch_mixing=True` reproduces the released code's defect for
comparison: each modality is one (B, 1, dim) tensor fed to sequence-first attention, so the batch becomes the
sequence and attention mixes the samples of a batch (a prediction then depends on its batch-mates, and eval
results on the batch size). Never the default.

With the defaults (dims 512, 4 tokens, 4 heads): 1.6 M parameters, ≈ 3 MMAC per sample.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from training.errors import ConfigError


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x), LN(context)), then x + MLP(LN(x)). Self-attention
    (cross=False) attends to x itself. Tensors are (B, N, C), batch first."""

    def __init__(self, dim: int, num_heads: int, dropout: float, cross: bool = False) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross else None
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, 2 * dim, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q = self.norm_q(x)  # (B, N, C)
        kv = q if self.norm_kv is None else self.norm_kv(context)  # (B, M, C)
        x = x + self.attn(q, kv, kv, need_weights=False)[0]  # (B, N, C)
        return x + self.mlp(self.norm_mlp(x))  # (B, N, C)


class AttentionFusion(nn.Module):
    """visual (B, visual_dim), privileged (B, privileged_dim) → dict with `embedding` z (B, dim) and `gate` g.

    Args:
        visual_dim: visual feature size (512 for R3D18; TemporalHead.out_dim for the streaming backbone).
        privileged_dim: privileged feature size (default 512).
        dim: width of the per-modality heads and of z (default 512).
        num_tokens: tokens per modality; dim must divide into them (default 4; ignored in legacy mode).
        num_heads: attention heads; must divide the token width (default 4).
        dropout: dropout in heads, attention and MLPs, training only (default 0.1).
        legacy_batch_mixing: reproduce the released code's batch-mixing defect (default False; comparison only).
    """

    def __init__(
        self,
        visual_dim: int = 512,
        privileged_dim: int = 512,
        dim: int = 512,
        num_tokens: int = 4,
        num_heads: int = 4,
        dropout: float = 0.1,
        legacy_batch_mixing: bool = False,
    ) -> None:
        super().__init__()
        self.legacy_batch_mixing = legacy_batch_mixing
        self.num_tokens = 1 if legacy_batch_mixing else num_tokens
        if self.num_tokens < 1 or dim % self.num_tokens:
            raise ConfigError(f"fusion dim {dim} must split into num_tokens={num_tokens} equal tokens")
        token_dim = dim // self.num_tokens
        if token_dim % num_heads:
            raise ConfigError(f"fusion token width {token_dim} is not divisible by num_heads={num_heads}")
        self.dim, self.token_dim = dim, token_dim
        self.visual_head = nn.Sequential(nn.Linear(visual_dim, dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.privileged_head = nn.Sequential(nn.Linear(privileged_dim, dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.visual_pos = nn.Parameter(torch.zeros(1, self.num_tokens, token_dim))
        self.privileged_pos = nn.Parameter(torch.zeros(1, self.num_tokens, token_dim))
        nn.init.trunc_normal_(self.visual_pos, std=0.02)
        nn.init.trunc_normal_(self.privileged_pos, std=0.02)
        self.visual_self = AttentionBlock(token_dim, num_heads, dropout)
        self.privileged_self = AttentionBlock(token_dim, num_heads, dropout)
        self.visual_cross = AttentionBlock(token_dim, num_heads, dropout, cross=True)  # visual queries privileged
        self.privileged_cross = AttentionBlock(token_dim, num_heads, dropout, cross=True)  # privileged queries visual
        self.gate = nn.Linear(2 * dim, dim)

    def _tokens(self, h: torch.Tensor) -> torch.Tensor:
        if self.legacy_batch_mixing:
            return h.unsqueeze(0)  # (1, B, dim): the batch becomes the attention sequence (the released defect)
        return h.view(h.shape[0], self.num_tokens, self.token_dim)  # (B, n, dim/n)

    def _untokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.legacy_batch_mixing:
            return x.squeeze(0)  # (B, dim)
        return x.reshape(x.shape[0], self.dim)  # (B, dim)

    def forward(self, visual: torch.Tensor, privileged: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self._tokens(self.visual_head(visual)) + self.visual_pos  # (B, n, C)
        p = self._tokens(self.privileged_head(privileged)) + self.privileged_pos  # (B, n, C)
        v, p = self.visual_self(v), self.privileged_self(p)  # (B, n, C) each
        v, p = self.visual_cross(v, context=p), self.privileged_cross(p, context=v)  # (B, n, C) each
        c_v, c_p = self._untokens(v), self._untokens(p)  # (B, dim) each
        g = torch.sigmoid(self.gate(torch.cat([c_v, c_p], dim=-1)))  # (B, dim)
        z = g * c_v + (1 - g) * c_p  # (B, dim)
        return {"embedding": z, "gate": g, "visual_context": c_v, "privileged_context": c_p}
