"""The two tasks, defined once for training, export and the service (DESIGN.md section 1).

- pain: BioVid Heat Pain Part A, five ordinal levels BL1, PA1..PA4 (class ids 0..4), or the paper's binary
  protocol BL1 vs PA4. A model outputs class `logits` (or `probabilities`).
- affect: Aff-Wild2 valence and arousal, each in [-1, 1]. A model outputs `va` (B, 2): valence, then arousal.
"""

from __future__ import annotations

from typing import Literal

Task = Literal["pain", "affect"]
TASKS: tuple[Task, ...] = ("pain", "affect")
REGRESSION_TASKS: tuple[Task, ...] = ("affect",)

PAIN_LABELS = ("BL1", "PA1", "PA2", "PA3", "PA4")  # class id 0..4: baseline, then heat pain levels 1..4
BINARY_PAIN_LABELS = (PAIN_LABELS[0], PAIN_LABELS[-1])  # the paper's binary protocol: BL1 vs PA4
AFFECT_RANGES = {"valence": (-1.0, 1.0), "arousal": (-1.0, 1.0)}  # in output order

# the key of each task's prediction in a model's outputs: in training's output dicts and the exported graphs
TASK_OUTPUT: dict[Task, str] = {"pain": "logits", "affect": "va"}
# the names an exported graph may give that prediction (a pain graph may give probabilities instead of logits)
GRAPH_OUTPUTS: dict[Task, tuple[str, ...]] = {"pain": ("logits", "probabilities"), "affect": ("va",)}


def pain_labels(num_classes: int) -> tuple[str, ...]:
    """The level names of a pain model with `num_classes` outputs: 5 (BL1..PA4) or 2 (BL1 vs PA4)."""
    if num_classes == len(PAIN_LABELS):
        return PAIN_LABELS
    if num_classes == len(BINARY_PAIN_LABELS):
        return BINARY_PAIN_LABELS
    raise ValueError(f"a pain model with {num_classes} classes has no known labels (5: BL1..PA4, 2: BL1 vs PA4)")
