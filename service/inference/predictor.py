"""Predictors: preprocess (face crop -> model input), predict (ONNX graphs through the batchers), postprocess.

A streaming student runs its `encoder` once per frame and its `head` over the embeddings of the last T frames
(T = `preprocessing.window` in the manifest), oldest first. A one-graph student (`model`) and a teacher take the
T crops themselves, (1, T, 3, S, S). When fewer than T frames are available (a single image, the first frames of
a stream, a short clip), the window is padded at the front by repeating its first (oldest) item, so a single
image is read as a still face held for the whole window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pkdot_contract.preprocessing.crop import CropSpec, crop_face, to_model_input
from pkdot_contract.preprocessing.face import FaceBox
from service.core.errors import InferenceFailed
from service.core.schemas import AffectAgreement, AffectPrediction, PainAgreement, PainPrediction, Prediction
from service.inference.models import LoadedModel


def pad_window(items: Sequence[np.ndarray], window: int) -> np.ndarray:
    """The last `window` items, front-padded by repeating the first: (window, ...)."""
    if not items:
        raise ValueError("an empty window")
    last = list(items[-window:])
    return np.stack([last[0]] * (window - len(last)) + last)  # (T, ...)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return e / e.sum()


def pain_prediction(probabilities: np.ndarray, labels: Sequence[str]) -> PainPrediction:
    p = np.clip(np.asarray(probabilities, np.float64), 0.0, 1.0)
    p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1.0 / len(p))
    level = int(np.argmax(p))
    expected = float(np.clip((p * np.arange(len(p))).sum(), 0.0, len(p) - 1))
    return PainPrediction(pain_level=level, label=labels[level], probabilities=[float(x) for x in p],
                          expected_level=expected)


def affect_prediction(va: np.ndarray, ranges: dict[str, tuple[float, float]] | None = None) -> AffectPrediction:
    ranges = ranges or {}
    lo_v, hi_v = ranges.get("valence", (-1.0, 1.0))
    lo_a, hi_a = ranges.get("arousal", (-1.0, 1.0))
    v = float(np.clip(va[0], max(lo_v, -1.0), min(hi_v, 1.0)))
    a = float(np.clip(va[1], max(lo_a, -1.0), min(hi_a, 1.0)))
    return AffectPrediction(valence=v, arousal=a)


def mean_prediction(predictions: Sequence[Prediction], labels: Sequence[str] | None) -> Prediction | None:
    """The average of several predictions of one task: mean probabilities, or mean valence and arousal."""
    if not predictions:
        return None
    if isinstance(predictions[0], PainPrediction):
        return pain_prediction(np.mean([p.probabilities for p in predictions], axis=0), labels or [])
    return AffectPrediction(valence=float(np.mean([p.valence for p in predictions])),
                            arousal=float(np.mean([p.arousal for p in predictions])))


def agreement(teacher: Prediction, student: Prediction) -> PainAgreement | AffectAgreement:
    if isinstance(teacher, PainPrediction) and isinstance(student, PainPrediction):
        tv = 0.5 * float(np.abs(np.subtract(teacher.probabilities, student.probabilities)).sum())
        return PainAgreement(same_level=teacher.pain_level == student.pain_level,
                             level_difference=student.pain_level - teacher.pain_level,
                             total_variation=min(max(tv, 0.0), 1.0))
    dv, da = student.valence - teacher.valence, student.arousal - teacher.arousal
    return AffectAgreement(valence_difference=dv, arousal_difference=da, distance=float(np.hypot(dv, da)))


class GraphError(Exception):
    """A graph that raised when called directly (not through its batcher): which one, and why."""

    def __init__(self, graph: str, cause: Exception) -> None:
        super().__init__(f"graph {graph}: {type(cause).__name__}: {cause}")
        self.graph, self.cause = graph, cause


class Predictor:
    """One model, split into preprocess / predict / postprocess. Stateless: streams keep their own window."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.task = model.task
        self.window = model.window
        self.crop: CropSpec = model.crop
        outputs = model.manifest.outputs
        self.labels = list(outputs.labels or [])
        self.ranges = outputs.ranges

    # -- preprocess --------------------------------------------------------------------------------------------------

    def preprocess(self, rgb: np.ndarray, box: FaceBox) -> np.ndarray:
        """One RGB uint8 frame (H, W, 3) and its face -> float32 model input (3, S, S). Blocking (run it off-loop)."""
        return to_model_input(crop_face(rgb, box, self.crop), self.crop)

    # -- predict -----------------------------------------------------------------------------------------------------

    async def encode(self, inputs: np.ndarray) -> list[np.ndarray]:
        """Per-frame items of the temporal window: encoder embeddings (D,) when streaming, else the inputs."""
        if not self.model.streaming:
            return list(inputs)
        out = await self.model.run("encoder", {"frames": inputs})  # (N, D)
        return list(out["embedding"])

    async def predict_window(self, items: Sequence[np.ndarray], privileged: np.ndarray | None = None
                             ) -> dict[str, np.ndarray]:
        """The model's outputs (one row) for a window of items, oldest first."""
        window = pad_window(items, self.window)[None]  # (1, T, D) or (1, T, 3, S, S)
        if self.model.streaming:
            out = await self.model.run("head", {"embeddings": window})
        else:
            feed = {"video": window}
            if privileged is not None:
                feed["privileged"] = privileged[None]  # (1, ...)
            out = await self.model.run("model", feed)
        return {k: v[0] for k, v in out.items()}

    def step_blocking(self, model_input: np.ndarray, items: Sequence[np.ndarray]) -> tuple[np.ndarray,
                                                                                          dict[str, np.ndarray]]:
        """One stream frame without the batchers, in the calling thread (blocking; ONNX Runtime releases the GIL):
        its window item (the encoder's embedding when streaming, else the input) and the model's outputs over the
        window of `items` followed by it. The same as `encode` then `predict_window`, one call at a time."""
        def run(graph: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            try:
                return self.model.graphs[graph].run(feed)
            except Exception as exc:  # ONNX Runtime or Triton: the caller answers 503 for this frame
                raise GraphError(graph, exc) from exc

        if self.model.streaming:
            item = run("encoder", {"frames": model_input[None]})["embedding"][0]  # (D,)
            out = run("head", {"embeddings": pad_window([*items, item], self.window)[None]})
        else:
            item = model_input  # (3, S, S)
            out = run("model", {"video": pad_window([*items, item], self.window)[None]})
        return item, {k: v[0] for k, v in out.items()}

    # -- postprocess -------------------------------------------------------------------------------------------------

    def postprocess(self, outputs: dict[str, np.ndarray]) -> Prediction:
        """One row of outputs -> the prediction. A NaN or inf output is `InferenceFailed` (503), never a made-up
        answer (a NaN probability would otherwise read as a uniform distribution)."""
        pain = self.task == "pain"
        name = ("probabilities" if "probabilities" in outputs else "logits") if pain else "va"
        value = np.asarray(outputs[name])
        if not np.isfinite(value).all():
            raise InferenceFailed(f"model {self.model.name} gave a non-finite {name} output (NaN or inf) for this "
                                  "input")
        if pain:
            return pain_prediction(value if name == "probabilities" else softmax(value), self.labels)
        return affect_prediction(value, self.ranges)

    def smooth(self, predictions: Sequence[Prediction]) -> Prediction | None:
        return mean_prediction(predictions, self.labels)

    def relative(self, prediction: Prediction, baseline: Prediction) -> dict[str, float]:
        """A prediction relative to a person's calibrated neutral baseline."""
        if isinstance(prediction, PainPrediction) and isinstance(baseline, PainPrediction):
            return {"expected_level": prediction.expected_level - baseline.expected_level,
                    "pain_level": float(prediction.pain_level - baseline.pain_level)}
        return {"valence": prediction.valence - baseline.valence, "arousal": prediction.arousal - baseline.arousal}

    async def predict_inputs(self, inputs: np.ndarray, privileged: np.ndarray | None = None) -> Prediction:
        """Model inputs (N, 3, S, S) of consecutive face frames -> the prediction at the last of them."""
        items = await self.encode(inputs)
        return self.postprocess(await self.predict_window(items, privileged))
