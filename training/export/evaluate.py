"""Running exported graphs the way the service does, and scoring them on a validation split.

`OnnxPredictor` feeds a clip through the graphs: a streaming student's encoder once per frame and its head over
the T frame embeddings; a one-graph model directly. `evaluate_graphs` scores its predictions with the training
metrics (pain: accuracy of the arg-max class; affect: mean CCC of valence and arousal), which is how the int8
export is compared with fp32.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pkdot_contract.preprocessing.crop import CropSpec, to_model_input
from training.metrics import PRIMARY_METRIC, task_metrics

PRIVILEGED_KEYS = ("privileged", "signal", "audio")  # the batch keys of the datasets' privileged inputs
TARGET_KEYS = ("target", "label", "va")


def _first(batch: Mapping[str, Any], keys: tuple[str, ...]) -> np.ndarray | None:
    for k in keys:
        if k in batch:
            return np.asarray(batch[k])
    return None


def as_video(x: np.ndarray, spec: CropSpec | None) -> np.ndarray:
    """Model-input clips float32 (B, T, 3, S, S), from themselves or from uint8 crops (B, T, S, S, 3)."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        if spec is None:
            raise ValueError("uint8 face crops need the crop spec to become model inputs")
        return to_model_input(x, spec)
    return np.ascontiguousarray(x, np.float32)


@dataclass(frozen=True)
class ValidationData:
    """The split the int8 model is judged on (a validation split, never the test fold).

    batches: called once per evaluation; yields mappings with "video" (model-input clips float32 (B, T, 3, S, S),
        or uint8 face crops (B, T, S, S, 3)), the target under "target", "label" (pain class) or "va" (affect, (B, 2)),
        and, for a teacher, the privileged input under "privileged", "signal" or "audio". A torch DataLoader over the
        project's datasets fits as it is (`lambda: iter(loader)`).
    split: what the data is, for the manifest, e.g. "BioVid subject-kfold fold 0, validation subjects".
    """

    batches: Callable[[], Iterable[Mapping[str, Any]]]
    split: str

    @classmethod
    def from_arrays(cls, video: np.ndarray, targets: np.ndarray, privileged: np.ndarray | None = None, *,
                    split: str, batch_size: int = 16) -> ValidationData:
        if len(video) != len(targets) or (privileged is not None and len(privileged) != len(targets)):
            raise ValueError("video, targets (and privileged) must have one row per sample")

        def batches() -> Iterator[dict[str, np.ndarray]]:
            for i in range(0, len(targets), batch_size):
                batch = {"video": video[i : i + batch_size], "target": targets[i : i + batch_size]}
                if privileged is not None:
                    batch["privileged"] = privileged[i : i + batch_size]
                yield batch

        return cls(batches, split)


class OnnxPredictor:
    """ONNX Runtime (CPU) over a model's graphs: {"encoder", "head"} (streaming) or {"model"}."""

    def __init__(self, graphs: Mapping[str, str | os.PathLike]) -> None:
        from training.export.parity import ort_session

        self.sessions = {name: ort_session(path) for name, path in graphs.items()}
        self.streaming = set(graphs) == {"encoder", "head"}

    def __call__(self, video: np.ndarray, privileged: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """video float32 (B, T, 3, S, S) → {output name: array}."""
        if self.streaming:
            b, t = video.shape[:2]
            frames = video.reshape(b * t, *video.shape[2:])  # (B·T, 3, S, S)
            emb = self.sessions["encoder"].run(["embedding"], {"frames": frames})[0]  # (B·T, D)
            return self._run("head", {"embeddings": emb.reshape(b, t, -1)})  # (B, T, D) in
        feed = {"video": video}
        if privileged is not None:
            feed["privileged"] = np.ascontiguousarray(privileged, np.float32)
        return self._run("model", feed)

    def _run(self, name: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.sessions[name]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feed), strict=True))


def evaluate_graphs(graphs: Mapping[str, str | os.PathLike], task: str, data: ValidationData,
                    spec: CropSpec | None = None) -> dict[str, float]:
    """The task's validation metrics of the graphs (training.metrics.task_metrics), plus "samples"."""
    predict = OnnxPredictor(graphs)
    preds, targets, num_classes = [], [], 0
    for batch in data.batches():
        out = predict(as_video(batch["video"], spec), _first(batch, PRIVILEGED_KEYS))
        target = _first(batch, TARGET_KEYS)
        if target is None:
            raise ValueError(f"a validation batch has no target (one of {', '.join(TARGET_KEYS)})")
        if task == "pain":
            num_classes = out["logits"].shape[-1]
            logits = out["logits"] - out["logits"].max(-1, keepdims=True)
            preds.append(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))  # (B, C) probabilities
        else:
            preds.append(out["va"])
        targets.append(target)
    if not preds:
        raise ValueError(f"the validation data ({data.split}) is empty")
    metrics = task_metrics(task, np.concatenate(targets), np.concatenate(preds), num_classes or 5)
    return {**metrics, "samples": int(sum(len(t) for t in targets))}


def evaluate_model_folder(folder: str | os.PathLike, data: ValidationData) -> dict[str, float]:
    """Validation metrics of an exported model folder (verified first)."""
    from training.export.folder import verify_model_folder

    manifest = verify_model_folder(folder)
    spec = CropSpec.from_dict(manifest.preprocessing.crop.model_dump())
    graphs = {name: Path(folder) / g.file for name, g in manifest.graphs.items()}
    return evaluate_graphs(graphs, manifest.task, data, spec)


def primary_metric(task: str) -> str:
    return PRIMARY_METRIC[task]
