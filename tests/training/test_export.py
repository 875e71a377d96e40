"""`export_model` and the model folder: round trip, parity with PyTorch, manifest, Triton configs, tampering,
broken exports, and the training/serving preprocessing parity on a real face photo.

Tiny models (64×64 crops, 4-frame windows) keep these fast. Parity tolerance: fp32 max |onnx − torch| ≤ 1e-4 +
1e-4 · max |torch| per output (training.export.parity.TOLERANCES); the direct comparisons below use numpy's
elementwise allclose with atol = rtol = 1e-4, which is stricter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from pkdot_contract.manifest import Manifest, ModelFolderError, load_manifest
from pkdot_contract.preprocessing.crop import CropSpec, crop_face, to_model_input
from training.export import TOLERANCES, ExportError, OnnxPredictor, export_model, verify_model_folder
from training.export.folder import onnx_interface
from training.export.run_folder import astronaut_crops
from training.export.triton import TRITON_DTYPES, read_triton_config
from training.models import StreamingStudent, Teacher

SPEC = CropSpec(size=64)
WINDOW = 4
PAIN_OUTPUTS = {"kind": "classification", "labels": ["BL1", "PA1", "PA2", "PA3", "PA4"]}
AFFECT_OUTPUTS = {"kind": "regression", "ranges": {"valence": [-1.0, 1.0], "arousal": [-1.0, 1.0]}}
AUDIO = {"modality": "audio", "transform": "log-mel", "rate_hz": 16000, "window_s": 1.0, "params": {"n_mels": 64}}
AUDIO_SHAPE = (1, 64, 101)
PROVENANCE = {"dataset": {"name": "biovid"}, "synthetic": True, "split": "subject-kfold fold 0, validation",
              "metrics": {"accuracy": 0.41, "macro_f1": 0.39}}


def preprocessing(privileged: dict | None = None) -> dict:
    return {"crop": SPEC.to_dict(), "window": WINDOW, "frame_rate": WINDOW / 5.5, "privileged": privileged}


def warm(model: nn.Module, *inputs: torch.Tensor) -> nn.Module:
    """A few train-mode passes give BatchNorm real statistics (fresh ones make eval activations vanish)."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(*inputs)
    return model.eval()


def tiny_student(task: str = "pain", seed: int = 0) -> StreamingStudent:
    torch.manual_seed(seed)
    model = StreamingStudent(task=task, frame_dim=32, embed_dim=64, width=0.25, hidden_dim=32, dilations=(1, 2))
    return warm(model, torch.randn(4, WINDOW, 3, SPEC.size, SPEC.size))


def tiny_teacher(seed: int = 0) -> Teacher:
    torch.manual_seed(seed)
    model = Teacher(task="affect", visual_cfg={"frame_dim": 32, "out_dim": 64, "width": 0.25, "hidden_dim": 32,
                                               "dilations": (1, 2)},
                    privileged="audio", privileged_cfg={"out_dim": 64, "channels": (8, 8, 16, 16)},
                    fusion_dim=64, num_tokens=4, num_heads=2)
    return warm(model, torch.randn(4, WINDOW, 3, SPEC.size, SPEC.size), torch.randn(4, *AUDIO_SHAPE))


def export_student(model: nn.Module, out: Path, crops: np.ndarray, **kw):
    return export_model(model, task=model.task, role="student", name=out.name, version="1", out_dir=out,
                        preprocessing=preprocessing(), outputs=PAIN_OUTPUTS if model.task == "pain" else AFFECT_OUTPUTS,
                        provenance=PROVENANCE, check_crops=crops, **kw)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return astronaut_crops(SPEC)  # (8, 64, 64, 3) real face crops


@pytest.fixture(scope="module")
def student() -> StreamingStudent:
    return tiny_student()


@pytest.fixture(scope="module")
def student_export(student, crops, tmp_path_factory):
    return export_student(student, tmp_path_factory.mktemp("models") / "pain-student", crops)


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    return tiny_teacher()


@pytest.fixture(scope="module")
def teacher_export(teacher, crops, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "affect-teacher"
    return export_model(teacher, task="affect", role="teacher", name=out.name, version="1", out_dir=out,
                        preprocessing=preprocessing(AUDIO), outputs=AFFECT_OUTPUTS,
                        provenance={**PROVENANCE, "dataset": "affwild2", "synthetic": False},
                        check_crops=crops, privileged_shape=AUDIO_SHAPE)


def clips_of(crops: np.ndarray, batch: int) -> np.ndarray:
    frames = to_model_input(crops, SPEC)  # (N, 3, S, S)
    return np.stack([frames[(b + np.arange(WINDOW)) % len(frames)] for b in range(batch)])  # (B, T, 3, S, S)


# -- round trip ------------------------------------------------------------------------------------------------------


def test_student_folder_layout(student_export) -> None:
    folder = student_export.folder
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["MODEL_CARD.md", "encoder/1/model.onnx", "encoder/config.pbtxt", "head/1/model.onnx",
                     "head/config.pbtxt", "manifest.json"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    m = student_export.manifest
    assert m.streaming and m.precision == "fp32" and m.opset == 17
    assert [t.name for t in m.graphs["encoder"].inputs] == ["frames"]
    assert m.graphs["encoder"].inputs[0].shape == ["batch", 3, 64, 64]
    assert m.graphs["encoder"].outputs[0].shape == ["batch", 32]
    assert m.graphs["head"].inputs[0].shape == ["batch", WINDOW, 32]
    assert [(t.name, t.shape) for t in m.graphs["head"].outputs] == [
        ("logits", ["batch", 5]), ("probabilities", ["batch", 5]), ("embedding", ["batch", 64])]


@pytest.mark.parametrize("batch", [1, 8])
def test_streaming_student_matches_torch_clip_forward(student_export, student, crops, batch) -> None:
    """ORT encoder per frame + ORT head over the cached embeddings == the PyTorch model on the whole clip."""
    folder = student_export.folder
    predict = OnnxPredictor({g: folder / spec.file for g, spec in student_export.manifest.graphs.items()})
    video = clips_of(crops, batch)
    got = predict(video)
    with torch.no_grad():
        want = student(torch.from_numpy(video))
    tol = TOLERANCES["fp32"]
    for name, ref in (("logits", want["logits"]), ("embedding", want["embedding"]),
                      ("probabilities", torch.softmax(want["logits"], -1))):
        assert got[name].shape == (batch, ref.shape[-1])
        np.testing.assert_allclose(got[name], ref.numpy(), atol=tol.atol, rtol=tol.rtol)
    np.testing.assert_allclose(got["probabilities"].sum(-1), 1.0, atol=1e-5)


def test_parity_report_within_tolerance(student_export, teacher_export) -> None:
    for result in (student_export, teacher_export):
        for name, report in result.parity.items():
            assert report.cases == ["face crops, batch 1", "face crops, batch 8", "random, batch 1", "random, batch 8"]
            assert all(0 <= e <= 1e-4 for e in report.max_abs_error.values()), (name, report.max_abs_error)
        recorded = result.manifest.provenance["export"]
        assert "dynamo=False" in recorded["exporter"]
        assert (recorded["tolerance"]["atol"], recorded["tolerance"]["rtol"]) == (1e-4, 1e-4)


def test_teacher_round_trip(teacher_export, teacher, crops) -> None:
    m = teacher_export.manifest
    assert set(m.graphs) == {"model"} and m.role == "teacher"
    assert [(t.name, t.shape) for t in m.graphs["model"].inputs] == [
        ("video", ["batch", WINDOW, 3, 64, 64]), ("privileged", ["batch", *AUDIO_SHAPE])]
    assert [t.name for t in m.graphs["model"].outputs] == ["va", "embedding"]
    assert m.preprocessing.privileged.modality == "audio"
    predict = OnnxPredictor({"model": teacher_export.folder / "model/1/model.onnx"})
    for batch in (1, 8):
        video = clips_of(crops, batch)
        audio = np.random.default_rng(batch).standard_normal((batch, *AUDIO_SHAPE), dtype=np.float32)
        got = predict(video, audio)
        with torch.no_grad():
            want = teacher(torch.from_numpy(video), torch.from_numpy(audio))
        np.testing.assert_allclose(got["va"], want["va"].numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(got["embedding"], want["embedding"].numpy(), atol=1e-4, rtol=1e-4)
        assert np.abs(got["va"]).max() <= 1.0


def test_non_streaming_student_is_one_graph(crops, tmp_path) -> None:
    from training.models import PaperStudent

    torch.manual_seed(0)
    model = PaperStudent(task="pain", visual_cfg={"frame_dim": 32, "out_dim": 64, "width": 0.25, "hidden_dim": 32,
                                                  "dilations": (1, 2)},
                         privileged_dim=64, tnet_hidden=(32,), fusion_dim=64, num_heads=2)
    warm(model, torch.randn(4, WINDOW, 3, SPEC.size, SPEC.size))
    result = export_student(model, tmp_path / "paper-student", crops)
    graph = result.manifest.graphs["model"]
    assert set(result.manifest.graphs) == {"model"} and not result.manifest.streaming
    assert [(t.name, t.shape) for t in graph.inputs] == [("video", ["batch", WINDOW, 3, SPEC.size, SPEC.size])]
    assert [t.name for t in graph.outputs] == ["logits", "probabilities", "embedding"]
    got = OnnxPredictor({"model": result.folder / graph.file})(clips_of(crops, 8))
    with torch.no_grad():
        want = model(torch.from_numpy(clips_of(crops, 8)))
    np.testing.assert_allclose(got["logits"], want["logits"].numpy(), atol=1e-4, rtol=1e-4)


# -- manifest, ONNX interface, Triton ---------------------------------------------------------------------------------


def test_manifest_validates_and_matches_onnx(student_export, teacher_export) -> None:
    for result in (student_export, teacher_export):
        folder = result.folder
        raw = json.loads((folder / "manifest.json").read_text())
        manifest = Manifest.model_validate(raw)
        assert set(raw["files"]) == {p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                     if p.is_file() and p.name != "manifest.json"}
        assert all(len(h) == 64 for h in raw["files"].values())
        for spec in manifest.graphs.values():
            model = onnx.load(str(folder / spec.file))
            inputs, outputs = onnx_interface(model)
            assert [(t.name, t.shape, t.dtype) for t in inputs] == [(t.name, t.shape, t.dtype) for t in spec.inputs]
            assert [(t.name, t.shape, t.dtype) for t in outputs] == [(t.name, t.shape, t.dtype) for t in spec.outputs]
            assert {o.domain: o.version for o in model.opset_import}[""] == manifest.opset
        assert verify_model_folder(folder) == manifest


def test_triton_configs_consistent(student_export, teacher_export) -> None:
    for result in (student_export, teacher_export):
        for name, spec in result.manifest.graphs.items():
            config = read_triton_config((result.folder / name / "config.pbtxt").read_text())
            assert config["name"] == name  # Triton's model name is its directory's
            assert config["platform"] == "onnxruntime_onnx"
            assert config["max_batch_size"] >= 8
            assert "max_queue_delay_microseconds" in config["dynamic_batching"]
            for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
                assert [(e["name"], e["data_type"], e["dims"]) for e in config[kind]] == [
                    (t.name, TRITON_DTYPES[t.dtype], t.shape[1:]) for t in tensors]  # dims without the batch axis
            assert (result.folder / name / "1" / "model.onnx").is_file()


def test_model_card(student_export, teacher_export) -> None:
    card = (student_export.folder / "MODEL_CARD.md").read_text()
    assert "Trained on synthetic data" in card and "demonstrates the PKDOT pipeline" in card
    assert "not clinical accuracy" in card
    assert "Not a medical device" in card
    assert "| subject-kfold fold 0, validation | accuracy | 0.41 |" in card
    assert "Apache-2.0" in student_export.manifest.licence
    teacher_card = (teacher_export.folder / "MODEL_CARD.md").read_text()
    assert "Research use only" in teacher_export.manifest.licence and "Aff-Wild2" in teacher_export.manifest.licence
    assert "synthetic" not in teacher_card.lower()


# -- tampering --------------------------------------------------------------------------------------------------------


@pytest.fixture
def copy_of(student_export, tmp_path) -> Path:
    return Path(shutil.copytree(student_export.folder, tmp_path / "copy"))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("rel", ["encoder/1/model.onnx", "head/1/model.onnx", "head/config.pbtxt", "MODEL_CARD.md"])
def test_tampered_file_refused(copy_of, rel) -> None:
    path = copy_of / rel
    flip_byte(path, path.stat().st_size // 2)
    with pytest.raises(ModelFolderError, match=f"{rel} does not match its sha256"):
        verify_model_folder(copy_of)
    with pytest.raises(ModelFolderError, match=rel):
        load_manifest(copy_of)  # the service's loader refuses it too


def test_added_or_missing_file_refused(copy_of) -> None:
    (copy_of / "encoder" / "2").mkdir()
    (copy_of / "encoder" / "2" / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFolderError, match="encoder/2/model.onnx is not listed"):
        verify_model_folder(copy_of)
    shutil.rmtree(copy_of / "encoder" / "2")
    (copy_of / "head" / "config.pbtxt").unlink()
    with pytest.raises(ModelFolderError, match="head/config.pbtxt is listed in the manifest but missing"):
        verify_model_folder(copy_of)


def test_manifest_that_lies_about_the_graph_refused(copy_of) -> None:
    raw = json.loads((copy_of / "manifest.json").read_text())
    raw["graphs"]["encoder"]["inputs"][0]["name"] = "images"
    (copy_of / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelFolderError, match=r"encoder/1/model.onnx: inputs are \['frames'\].*\['images'\]"):
        verify_model_folder(copy_of)
    raw["graphs"]["encoder"]["inputs"][0]["name"] = "frames"
    raw["graphs"]["encoder"]["inputs"][0]["shape"] = ["batch", 3, 112, 112]
    (copy_of / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelFolderError, match="input 'frames' has shape"):
        verify_model_folder(copy_of)


# -- failed exports -------------------------------------------------------------------------------------------------


class Unfaithful(nn.Module):
    """A 'student' whose encoder scales by a Python float read from its input: the tracer freezes that number as a
    constant of the graph, so ONNX Runtime's answers differ from PyTorch's on any other input."""

    task = "pain"

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 8)
        self.head = nn.Linear(8, 5)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return self.proj(frames.mean(dim=(2, 3))) * float(frames.abs().max())  # (B, 8)

    def forward_embeddings(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        z = embeddings.mean(1)  # (B, 8)
        return {"embedding": z, "logits": self.head(z)}


def test_broken_export_raises_with_measured_error(crops, tmp_path) -> None:
    out = tmp_path / "models" / "broken"
    with pytest.raises(ExportError, match=r"graph 'encoder', output 'embedding' \(face crops, batch 1\): ONNX Runtime "
                                          r"differs from PyTorch by up to \d\.\d+e?-?\d* \(max abs error\)"):
        export_student(Unfaithful(), out, crops)
    assert not out.exists()
    assert list((tmp_path / "models").iterdir()) == []  # the staging folder is gone too


def test_failed_export_keeps_the_existing_folder(student_export, crops, tmp_path) -> None:
    out = Path(shutil.copytree(student_export.folder, tmp_path / "pain-student"))
    before = (out / "manifest.json").read_text()
    with pytest.raises(ExportError):
        export_student(Unfaithful(), out, crops, overwrite=True)
    assert (out / "manifest.json").read_text() == before
    verify_model_folder(out)
    with pytest.raises(ExportError, match="already exists"):
        export_student(tiny_student(), out, crops)


def test_zero_tolerance_reports_the_error(student, crops, tmp_path) -> None:
    """Float32 ONNX Runtime is not bit-identical to PyTorch: with a zero tolerance the check fails and says by how
    much."""
    from training.export import Tolerance

    with pytest.raises(ExportError, match=r"differs from PyTorch by up to [0-9.e-]+ \(max abs error\), beyond the "
                                          r"tolerance max\|onnx - torch\| <= 0 \+ 0\*max\|torch\| = 0"):
        export_student(student, tmp_path / "zero", crops, tolerance=Tolerance(0.0, 0.0))


def test_wrong_crops_refused(student, tmp_path) -> None:
    with pytest.raises(ExportError, match=r"check_crops must be uint8 face crops \(N, 64, 64, 3\)"):
        export_student(student, tmp_path / "x", np.zeros((4, 112, 112, 3), np.uint8))


# -- preprocessing parity between training and serving -------------------------------------------------------------


def write_lossless_video(path: Path, frame: np.ndarray, count: int = 3) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
        for _ in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def test_training_and_serving_build_the_same_input(face_rgb, face_png, face_detector, tmp_path) -> None:
    """The astronaut photo becomes the same model input through `pkdot prepare`'s face-crop cache (training) and
    through decode → FaceDetector → crop_face → to_model_input (the service). Tolerance: exact (max abs diff 0);
    the frame reaches both sides losslessly (PNG upload, PNG-coded AVI), so any difference is a code mismatch."""
    from pkdot_contract.preprocessing.media import decode_image
    from training.data.cache import CropCache
    from training.data.prepare import PrepareItem, prepare_one

    spec = CropSpec()  # the default 112×112 crop
    video = tmp_path / "astronaut.avi"
    write_lossless_video(video, face_rgb)
    key, arrays, problem = prepare_one(PrepareItem(key="s1/astronaut", video=video), spec.to_dict(), 0.5, 1)
    assert problem is None and arrays["has_face"].all()
    cache = CropCache(tmp_path / "cache")
    cache.write_meta({"dataset": "biovid", "crop": spec.to_dict()})
    cache.write(key, **arrays)
    training_input = to_model_input(np.asarray(cache.read(key).crops[0]), cache.spec)  # (3, 112, 112)

    rgb = decode_image(face_png)
    box = face_detector.largest(rgb)
    serving_input = to_model_input(crop_face(rgb, box, spec), spec)  # (3, 112, 112)

    assert training_input.shape == serving_input.shape == (3, 112, 112)
    assert training_input.dtype == serving_input.dtype == np.float32
    assert float(np.abs(training_input - serving_input).max()) == 0.0
