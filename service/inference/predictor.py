"""Predictors: preprocess (face crop -> model input), predict (ONNX graphs through the batchers), postprocess.

A streaming student runs its `encoder` once per frame and its `head` over the embeddings of the last T frames
(T = `preprocessing.window` in the manifest), oldest first. A one-graph student (`model`) and a teacher take the
T crops themselves, (1, T, 3, S, S). When fewer than T frames are available (a single image, the first frames of
a stream, a short clip), the window is padded at the front by repeating its first (oldest) item, so a single
image is read as a still face held for the whole window.
"""

from __future__ import annotations

import math
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


def softmax(logits: Sequence[float]) -> list[float]:
    """Probabilities from logits, in float64 (plain Python: five numbers cost less than a numpy call)."""
    top = max(logits)
    e = [math.exp(float(x) - top) for x in logits]
    total = sum(e)
    return [x / total for x in e]


# A prediction's fields as plain Python (the JSON a stream sends, built per frame): the pydantic models of
# service.core.schemas are made from them where a REST response needs one.

def pain_fields(probabilities: Sequence[float], labels: Sequence[str]) -> dict:
    """The fields of a `PainPrediction`: probabilities clipped to [0, 1] and renormalised (uniform when they sum
    to 0), the most probable level (the first on a tie), its label and the expected level."""
    p = [min(max(float(x), 0.0), 1.0) for x in probabilities]
    total = sum(p)
    p = [x / total for x in p] if total > 0 else [1.0 / len(p)] * len(p)
    level = max(range(len(p)), key=p.__getitem__)
    expected = min(max(sum(i * x for i, x in enumerate(p)), 0.0), len(p) - 1.0)
    return {"pain_level": level, "label": labels[level], "probabilities": p, "expected_level": expected}


def affect_fields(va: Sequence[float], ranges: dict[str, tuple[float, float]] | None = None) -> dict:
    """The fields of an `AffectPrediction`: valence and arousal clipped to the manifest's ranges within [-1, 1]."""
    ranges = ranges or {}
    out = {}
    for name, value in (("valence", va[0]), ("arousal", va[1])):
        lo, hi = ranges.get(name, (-1.0, 1.0))
        out[name] = min(max(float(value), max(lo, -1.0)), min(hi, 1.0))
    return out


def mean_fields(predictions: Sequence[dict], labels: Sequence[str] | None) -> dict | None:
    """The average of several predictions of one task (as fields): mean probabilities, or mean valence and
    arousal."""
    if not predictions:
        return None
    n = len(predictions)
    if "probabilities" in predictions[0]:
        columns = zip(*(p["probabilities"] for p in predictions), strict=True)
        return pain_fields([sum(c) / n for c in columns], labels or [])
    return {"valence": sum(p["valence"] for p in predictions) / n,
            "arousal": sum(p["arousal"] for p in predictions) / n}


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

    def fields(self, outputs: dict[str, np.ndarray]) -> dict:
        """One row of outputs -> the prediction's fields (plain Python). A NaN or inf output is `InferenceFailed`
        (503), never a made-up answer (a NaN probability would otherwise read as a uniform distribution)."""
        pain = self.task == "pain"
        name = ("probabilities" if "probabilities" in outputs else "logits") if pain else "va"
        value = np.asarray(outputs[name]).tolist()
        if not all(math.isfinite(v) for v in value):
            raise InferenceFailed(f"model {self.model.name} gave a non-finite {name} output (NaN or inf) for this "
                                  "input")
        if pain:
            return pain_fields(value if name == "probabilities" else softmax(value), self.labels)
        return affect_fields(value, self.ranges)

    def postprocess(self, outputs: dict[str, np.ndarray]) -> Prediction:
        """One row of outputs -> the prediction (see `fields`)."""
        fields = self.fields(outputs)
        return PainPrediction(**fields) if self.task == "pain" else AffectPrediction(**fields)

    def smooth(self, predictions: Sequence[dict]) -> dict | None:
        """The mean of several predictions' fields (None for none)."""
        return mean_fields(predictions, self.labels)

    def relative(self, prediction: dict, baseline: dict) -> dict[str, float]:
        """A prediction relative to a person's calibrated neutral baseline (both as fields)."""
        if "probabilities" in prediction:
            return {"expected_level": prediction["expected_level"] - baseline["expected_level"],
                    "pain_level": float(prediction["pain_level"] - baseline["pain_level"])}
        return {"valence": prediction["valence"] - baseline["valence"],
                "arousal": prediction["arousal"] - baseline["arousal"]}

    async def predict_inputs(self, inputs: np.ndarray, privileged: np.ndarray | None = None) -> Prediction:
        """Model inputs (N, 3, S, S) of consecutive face frames -> the prediction at the last of them."""
        items = await self.encode(inputs)
        return self.postprocess(await self.predict_window(items, privileged))
