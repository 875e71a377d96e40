"""Start-up and readiness: broken model folders, skipping them, the GPU requirement, providers, defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pkdot_contract.manifest import folder_files
from service.app import create_app
from service.core.errors import ModelLoadError
from service.inference.runtime import requested_providers
from tests.service.conftest import make_settings


def test_broken_folder_stops_start_up_with_a_clear_message(broken_root: Path) -> None:
    with pytest.raises(ModelLoadError) as info, TestClient(create_app(make_settings(broken_root))):
        pass
    message = str(info.value)
    assert "pain-tampered" in message and "encoder/1/model.onnx" in message and "sha256" in message


def test_broken_folder_skipped_and_reported(broken_root: Path, face_jpeg: bytes) -> None:
    with TestClient(create_app(make_settings(broken_root, skip_broken_models=True))) as c:
        r = c.get("/readyz")
        assert r.status_code == 200
        body = r.json()
        assert {m["name"] for m in body["models"]} == {"pain-student", "affect-student"}
        assert len(body["skipped"]) == 1
        skipped = body["skipped"][0]
        assert skipped["folder"].endswith("pain-tampered") and "sha256" in skipped["error"]
        assert c.post("/predict/pain", files=[("file", ("f.jpg", face_jpeg, "image/jpeg"))]).status_code == 200


def test_a_graph_that_onnx_runtime_refuses(students_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "affect-student"
    shutil.copytree(students_root / "affect-student", bad)
    (bad / "head/1/model.onnx").write_bytes(b"this is not an onnx graph")
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["files"] = folder_files(bad)  # hashes match: the graph itself is what is wrong
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="affect-student"), TestClient(create_app(make_settings(tmp_path))):
        pass


def test_not_ready_without_models(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path / "empty"))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "no student model" in r.json()["reason"]
        assert c.get("/healthz").status_code == 200
        r = c.post("/predict/pain", files=[("file", ("f.jpg", b"\xff\xd8", "image/jpeg"))])
        assert r.status_code == 404 and "no pain model" in r.json()["error"]["message"]


def test_require_gpu_fails_readiness_on_cpu(students_root: Path) -> None:
    with TestClient(create_app(make_settings(students_root, require_gpu=True))) as c:
        r = c.get("/readyz")
        body = r.json()
        assert r.status_code == 503 and "require_gpu" in body["reason"] and body["require_gpu"] is True
        assert {m["provider"] for m in body["models"]} == {"CPU"}  # reported as it is, never as requested


def test_asking_for_cuda_without_it_is_reported_not_hidden(students_root: Path) -> None:
    assert requested_providers("cpu") == ["CPUExecutionProvider"]
    assert requested_providers("cuda")[-1] == "CPUExecutionProvider"
    with TestClient(create_app(make_settings(students_root, providers="cuda"))) as c:
        assert {m["provider"] for m in c.get("/readyz").json()["models"]} == {"CPU"}


def test_teacher_required_but_missing(students_root: Path) -> None:
    with pytest.raises(ModelLoadError, match="teacher=on"), TestClient(create_app(make_settings(students_root,
                                                                                                teacher="on"))):
        pass


def test_default_model_setting(model_root: Path, face_jpeg: bytes) -> None:
    settings = make_settings(model_root, default_models={"pain": "pain-clip"}, teacher="off", warmup=False)
    with TestClient(create_app(settings)) as c:
        r = c.post("/predict/pain", files=[("file", ("f.jpg", face_jpeg, "image/jpeg"))])
        assert r.json()["model"]["name"] == "pain-clip"
        assert not any(m["role"] == "teacher" for m in c.get("/readyz").json()["models"])
    with pytest.raises(ModelLoadError, match="nope"), TestClient(create_app(make_settings(
            model_root, default_models={"pain": "nope"}))):
        pass


def test_pkdot_serve_flags_and_exit_codes(broken_root: Path) -> None:
    import argparse
    import logging

    from service import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--port", "0"])
    assert command.run(args) == 2  # invalid settings: a message, no traceback
    args = parser.parse_args(["--models-dir", str(broken_root), "--port", "8765", "--max-streams", "3",
                              "--log-format", "text", "--log-level", "warning"])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert command.run(args) == 3  # a broken folder: start-up fails, the process exits non-zero
    finally:
        root.handlers[:], root.level = handlers, level
