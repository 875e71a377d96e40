"""Typed, range-constrained request and response bodies (DESIGN.md section 4). OpenAPI at /docs shows them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pkdot_contract.tasks import Task

Unit = Annotated[float, Field(ge=-1.0, le=1.0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Milliseconds = Annotated[float, Field(ge=0.0)]


class _Model(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class ModelRef(_Model):
    name: str
    version: str


class Face(_Model):
    box: list[Annotated[float, Field(ge=0.0)]] = Field(min_length=4, max_length=4,
                                                       description="[x, y, w, h] in pixels of the frame")
    score: Probability = Field(description="detection confidence (of the last detection when tracked)")
    tracked: bool = Field(False, description="streams: the box was tracked from an earlier detection")


class PainPrediction(_Model):
    pain_level: int = Field(ge=0, le=4, description="most probable level (0 = BL1 ... 4 = PA4)")
    label: str = Field(description="name of that level, from the model's manifest")
    probabilities: list[Probability] = Field(min_length=2, max_length=5, description="in label order; sum to 1")
    expected_level: float = Field(ge=0.0, le=4.0, description="probability-weighted mean level")


class AffectPrediction(_Model):
    valence: Unit
    arousal: Unit


Prediction = PainPrediction | AffectPrediction


class PredictResponse(_Model):
    model: ModelRef
    task: Task
    face_detected: bool
    face: Face | None = Field(description="the face of the last frame used")
    prediction: Prediction | None = Field(description="null when no frame holds a face")
    frames_received: int = Field(ge=1)
    frames_used: int = Field(ge=0, description="face frames that entered the temporal window")
    timings_ms: dict[str, Milliseconds]


class PainAgreement(_Model):
    same_level: bool
    level_difference: int = Field(ge=-4, le=4, description="student level minus teacher level")
    total_variation: Probability = Field(description="half the L1 distance between the two distributions")


class AffectAgreement(_Model):
    valence_difference: float = Field(ge=-2.0, le=2.0, description="student minus teacher")
    arousal_difference: float = Field(ge=-2.0, le=2.0, description="student minus teacher")
    distance: float = Field(ge=0.0, le=2.9, description="Euclidean distance in the valence-arousal plane")


class ModelPrediction(_Model):
    model: ModelRef
    prediction: Prediction


class TeacherResponse(_Model):
    task: Task
    face_detected: bool
    face: Face | None
    teacher: ModelPrediction | None = Field(description="null when no frame holds a face")
    student: ModelPrediction | None
    agreement: PainAgreement | AffectAgreement | None
    frames_received: int = Field(ge=1)
    frames_used: int = Field(ge=0)
    signal: dict = Field(description="what the privileged signal was read as (modality, rate, seconds, channels)")
    timings_ms: dict[str, Milliseconds]


class ErrorDetail(_Model):
    code: int = Field(ge=400, le=599)
    message: str


class ErrorResponse(_Model):
    error: ErrorDetail


class Health(_Model):
    status: Literal["ok"]
    version: str


class ModelStatus(_Model):
    name: str
    version: str
    task: Task
    role: Literal["student", "teacher"]
    streaming: bool
    provider: str = Field(description="execution provider the model really runs on (CPU, CUDA, TensorRT)")
    providers: dict[str, list[str]] = Field(description="per graph, the providers of its session, in order")
    default: bool = Field(description="used when a request names no model")


class SkippedModel(_Model):
    folder: str
    error: str


class Readiness(_Model):
    status: Literal["ready", "not ready"]
    reason: str | None = None
    models: list[ModelStatus]
    skipped: list[SkippedModel]
    require_gpu: bool
    workers_ready: int | None = Field(None, description="worker processes of this server that have loaded their "
                                                       "models (`--workers` > 1 only)")


class ModelInfo(ModelStatus):
    manifest: dict


class ModelList(_Model):
    models: list[ModelInfo]


# -- WebSocket messages ----------------------------------------------------------------------------------------------


class StreamResult(_Model):
    type: Literal["result"] = "result"
    seq: int = Field(ge=0, description="0-based arrival number of the frame on this connection")
    ts: float = Field(description="server time (Unix seconds) when the frame arrived")
    face_detected: bool
    face: Face | None
    prediction: Prediction | None = Field(description="the model's output over the window ending at this frame")
    smoothed: Prediction | None = Field(description="mean of the predictions over the last window of frames")
    relative: dict[str, float] | None = Field(description="smoothed prediction minus the calibrated baseline")
    dropped: int = Field(ge=0, description="frames dropped so far because a newer one arrived")
    timings_ms: dict[str, Milliseconds]
