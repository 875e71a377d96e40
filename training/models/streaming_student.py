"""StreamingStudent: the deployed visual-only student — FrameEncoder + causal TemporalHead + task head.

Training sees whole clips; the service sees one frame at a time. The two are the same computation:
    forward(clip)  ==  forward_embeddings(stack([encode_frames(frame_t) for t in window]))
so the export writes two ONNX graphs (`export_graphs`): the frame encoder (B, 3, H, W) → (B, frame_dim), run once
per frame, and the head (B, T, frame_dim) → prediction, run over the service's cache of the last T embeddings.
Per-frame cost is one encoder call (≈ 77 MMAC at 112×112) plus one head call (≤ 10 MMAC:
the head reads at most its 15-frame receptive field, whatever T).
2.9 M parameters with the defaults.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from training.models.heads import TASK_OUTPUT, check_task, create_head
from training.models.visual import StreamingVisual


class StreamingHeadGraph(nn.Module):
    """The exported head graph: cached frame embeddings (B, T, frame_dim) → prediction tensor.

    The prediction is the task output: pain logits (B, num_classes) or valence/arousal (B, 2) in [-1, 1].
    """

    def __init__(self, student: StreamingStudent) -> None:
        super().__init__()
        self.temporal = student.visual.temporal
        self.head = student.head

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(self.temporal(embeddings))  # (B, num_classes) or (B, 2)


class StreamingStudent(nn.Module):
    """Visual-only student for streaming inference.

    Args:
        task: "pain" (output `logits`) or "affect" (output `va`).
        num_classes: pain classes, 5 or 2 (ignored for affect; default 5).
        frame_dim: frame embedding size cached by the service (default 256).
        embed_dim: joint embedding size z — what is distilled (default 512).
        width: channel multiplier of the frame encoder, either kind (default 1.0).
        hidden_dim: TemporalHead width (default 256).
        dilations: TemporalHead dilations (default (1, 2, 4): receptive field 15 frames).
        dropout: dropout in encoder, temporal head and task head (default 0.1).
        encoder: frame encoder, "mobilenet" (default) or "compact" (see training.models.visual).
        input_size: crop side of the compact encoder (default 64).
        delta: the temporal head also reads each frame's change from the window's first frame (default False).

    forward(clip (B, T, 3, H, W)) → {"embedding": z (B, embed_dim), "visual": z (the same tensor: the student's
    visual features), "frame_embeddings": (B, T, frame_dim), and "logits" (B, num_classes) or "va" (B, 2)}.
    """

    def __init__(
        self,
        task: str = "pain",
        num_classes: int = 5,
        frame_dim: int = 256,
        embed_dim: int = 512,
        width: float = 1.0,
        hidden_dim: int = 256,
        dilations: tuple[int, ...] = (1, 2, 4),
        dropout: float = 0.1,
        encoder: str = "mobilenet",
        input_size: int = 64,
        delta: bool = False,
    ) -> None:
        super().__init__()
        self.task = check_task(task)
        self.output_key = TASK_OUTPUT[task]
        self.frame_dim, self.embed_dim = frame_dim, embed_dim
        self.visual = StreamingVisual(frame_dim, embed_dim, width, hidden_dim, dilations, dropout, encoder, input_size,
                                      delta)
        self.head = create_head(task, embed_dim, num_classes, dropout)

    @property
    def encoder(self) -> nn.Module:
        return self.visual.encoder

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Single frames (N, 3, H, W) → frame embeddings (N, frame_dim): what the service runs per frame."""
        return self.visual.encoder(frames)

    def forward_embeddings(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cached frame embeddings (B, T, frame_dim) → output dict (without `frame_embeddings`)."""
        z = self.visual.temporal(embeddings)  # (B, embed_dim)
        return {"embedding": z, "visual": z, self.output_key: self.head(z)}

    def forward(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        frame_embeddings = self.visual.encode_frames(clip)  # (B, T, frame_dim)
        out = self.forward_embeddings(frame_embeddings)
        out["frame_embeddings"] = frame_embeddings
        return out

    def export_graphs(self) -> dict[str, nn.Module]:
        """The two modules exported as separate ONNX graphs: {"encoder": FrameEncoder, "head": StreamingHeadGraph}.

        Switches the student to eval mode: both graphs share its weights and are meant for inference.
        """
        self.eval()
        return {"encoder": self.visual.encoder, "head": StreamingHeadGraph(self).eval()}
