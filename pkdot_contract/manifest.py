"""The model-folder contract shared by `pkdot export` (writer) and the service (reader).

A model folder `models/<name>/` is a Triton model repository entry: `<graph>/config.pbtxt` and
`<graph>/1/model.onnx` per ONNX graph, plus `MODEL_CARD.md` and `manifest.json` (this schema). Nothing the
service needs about a model is hard-coded elsewhere: it is in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pkdot_contract.preprocessing.face import DEFAULT_DETECTOR, DETECTORS
from pkdot_contract.tasks import Task

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


class ModelFolderError(ValueError):
    """A model folder that is missing, malformed, or whose files do not match their recorded sha256."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TensorSpec(_Strict):
    name: str
    shape: list[int | str]  # symbolic dimensions by name, e.g. ["batch", 3, 112, 112]
    dtype: Literal["float32", "float16", "int64", "int32", "int8", "uint8", "bool"]


class GraphSpec(_Strict):
    file: str  # relative to the folder: "<graph>/1/model.onnx"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class CropPreprocessing(_Strict):
    size: int = Field(ge=8)  # square side in pixels
    margin: float = Field(ge=0.0, le=2.0)  # box growth on each side, fraction
    colour: Literal["RGB", "BGR"]
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)


class PrivilegedPreprocessing(_Strict):
    modality: Literal["biosignal", "audio"]
    transform: Literal["raw", "spectrogram", "log-mel"]
    channels: list[str] = []  # biosignal channel names, in input order
    rate_hz: float = Field(gt=0)  # sampling rate the transform expects
    window_s: float = Field(gt=0)  # length of the signal window
    params: dict = {}  # transform parameters (nperseg, n_mels, ...)


class DetectorPreprocessing(_Strict):
    name: str = DEFAULT_DETECTOR  # one of pkdot_contract.preprocessing.face.DETECTORS
    min_score: float | None = Field(default=None, gt=0.0, lt=1.0)  # None: the service's face_min_score

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DETECTORS:
            raise ValueError(f"unknown face detector {name!r}; known: {', '.join(DETECTORS)}")
        return name


class Preprocessing(_Strict):
    crop: CropPreprocessing
    window: int = Field(ge=1)  # frames in the temporal window
    frame_rate: float = Field(gt=0)  # frames per second the window assumes
    detector: DetectorPreprocessing = Field(default_factory=DetectorPreprocessing)  # the face finder trained with
    privileged: PrivilegedPreprocessing | None = None  # teachers only


class Outputs(_Strict):
    kind: Literal["classification", "regression"]
    labels: list[str] | None = None  # pain: class names in output order
    ranges: dict[str, tuple[float, float]] | None = None  # affect: {"valence": (-1, 1), "arousal": (-1, 1)}

    @model_validator(mode="after")
    def _check(self) -> Outputs:
        if self.kind == "classification" and not self.labels:
            raise ValueError("a classification model lists its labels")
        if self.kind == "regression" and not self.ranges:
            raise ValueError("a regression model gives the range of each output")
        return self


class Manifest(_Strict):
    schema_version: Literal[1]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str
    task: Task
    role: Literal["student", "teacher"]
    graphs: dict[str, GraphSpec]
    opset: int = Field(ge=7)
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    preprocessing: Preprocessing
    outputs: Outputs
    files: dict[str, str]  # relative path -> sha256 hex, every file of the folder but manifest.json
    provenance: dict = {}
    licence: str

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        if self.role == "student" and set(self.graphs) not in ({"model"}, {"encoder", "head"}):
            raise ValueError("a student has one graph 'model', or 'encoder' + 'head' when streaming")
        if self.role == "teacher" and self.preprocessing.privileged is None:
            raise ValueError("a teacher describes its privileged input in preprocessing.privileged")
        for name, g in self.graphs.items():
            if g.file not in self.files:
                raise ValueError(f"graph {name!r}: its file {g.file} has no sha256 in 'files'")
        for rel in self.files:  # relative POSIX paths inside the folder, as `folder_files` writes them
            parts = PurePosixPath(rel).parts
            if not parts or rel.startswith("/") or "\\" in rel or ".." in parts or ":" in parts[0]:
                raise ValueError(f"files: {rel!r} is not a path inside the model folder")
        return self

    @property
    def streaming(self) -> bool:
        return set(self.graphs) == {"encoder", "head"}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def folder_files(folder: str | os.PathLike) -> dict[str, str]:
    """sha256 of every file under `folder` except the manifest, by relative POSIX path."""
    folder = Path(folder)
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p != folder / MANIFEST)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def load_manifest(folder: str | os.PathLike, verify: bool = True) -> Manifest:
    """Read and validate `folder/manifest.json`; with `verify`, refuse a folder whose files do not match."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelFolderError(f"{folder}: no {MANIFEST} (not an exported model folder)")
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{path}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise ModelFolderError(f"{path}: invalid manifest: {problems}") from None
    if verify:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    for rel, expected in manifest.files.items():
        p = folder / rel
        if not p.is_file():
            raise ModelFolderError(f"{folder}: {rel} is listed in the manifest but missing")
        actual = sha256_file(p)
        if actual != expected:
            raise ModelFolderError(f"{folder}: {rel} does not match its sha256 in the manifest "
                                   f"(expected {expected[:12]}…, found {actual[:12]}…): the file was changed")
