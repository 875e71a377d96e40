"""The frozen teacher's outputs on every training clip, computed once per distillation run.

A distilled student needs, for each training batch, the teacher's joint embedding z (and its logits for logit KD).
The teacher is frozen, so these depend only on what it is shown. Two ways to show it (`kd.teacher`):

    "cached"  each training clip once, as evaluation sees it (TSN centre frames, no augmentation) with its
              privileged signal; the student's batches then look their clips' rows up by key. One teacher pass
              over the training set instead of one per step: a third to half of a small student's run time.
    "online"  the teacher runs on every augmented batch beside the student (the released code's way).

A clip is identified by its dataset key, plus the target frame for Aff-Wild2 clips (one track holds many).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from training.objectives import privileged_input


def clip_ids(batch: dict) -> list[str]:
    """One id per clip of a batch: its key, and `@frame` where a clip is one target frame of a longer track."""
    keys = list(batch["key"])
    if "frame" not in batch:
        return keys
    return [f"{k}@{int(f)}" for k, f in zip(keys, batch["frame"], strict=True)]


class TeacherTargets:
    """`lookup(batch)` → {"embedding": (B, d), "logits": (B, C) when the teacher has them}, in the batch's order.

    Built by running `teacher` (eval mode, no gradient) over `dataset`, `batch_size` clips at a time.
    """

    def __init__(self, teacher: nn.Module, dataset: Dataset, batch_size: int, device: torch.device) -> None:
        teacher.eval()
        rows: dict[str, list[torch.Tensor]] = {}
        ids: list[str] = []
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                out = teacher(batch["video"].to(device), privileged_input(batch).to(device))
                ids += clip_ids(batch)
                for name in ("embedding", "logits"):
                    if name in out:
                        rows.setdefault(name, []).append(out[name].float())
        self.index = {clip: i for i, clip in enumerate(ids)}
        if len(self.index) != len(ids):
            raise ValueError("two training clips share an id; the teacher's outputs cannot be looked up by key")
        self.outputs = {name: torch.cat(parts) for name, parts in rows.items()}  # name -> (N, ...)

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, batch: dict) -> dict[str, torch.Tensor]:
        try:
            rows = torch.tensor([self.index[c] for c in clip_ids(batch)])
        except KeyError as exc:
            raise KeyError(f"clip {exc.args[0]!r} is not among the training clips the teacher was run on") from None
        return {name: values[rows] for name, values in self.outputs.items()}  # (B, ...)
