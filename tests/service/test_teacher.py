"""The teacher endpoint: clip + privileged signal -> teacher and student side by side, with their agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.service.conftest import biovid_csv, wav_bytes


def _files(face_jpeg: bytes, signal: bytes, name: str, ctype: str) -> list:
    return [("file", ("face.jpg", face_jpeg, "image/jpeg")), ("signal", (name, signal, ctype))]


def test_pain_teacher_with_a_biovid_csv(client, face_jpeg: bytes) -> None:
    r = client.post("/predict/teacher/pain", files=_files(face_jpeg, biovid_csv(), "s_bio.csv", "text/csv"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["teacher"]["model"]["name"] == "pain-teacher"
    assert body["student"]["model"]["name"] == "pain-student"
    for side in ("teacher", "student"):
        p = body[side]["prediction"]["probabilities"]
        assert sum(p) == pytest.approx(1.0, abs=1e-6) and len(p) == 5
    t, s = body["teacher"]["prediction"], body["student"]["prediction"]
    a = body["agreement"]
    assert a["same_level"] == (t["pain_level"] == s["pain_level"])
    assert a["level_difference"] == s["pain_level"] - t["pain_level"]
    tv = 0.5 * np.abs(np.subtract(t["probabilities"], s["probabilities"])).sum()
    assert a["total_variation"] == pytest.approx(tv, abs=1e-9)
    assert body["signal"]["source"] == "biovid-csv" and body["signal"]["seconds"] == pytest.approx(5.5, abs=0.01)
    assert body["signal"]["channels"] == ["gsr", "ecg", "emg_trapezius"]


def test_the_signal_matters(client, face_jpeg: bytes) -> None:
    a = client.post("/predict/teacher/pain", files=_files(face_jpeg, biovid_csv(seed=0), "a.csv", "text/csv")).json()
    quiet = {"rate_hz": 512, "channels": {c: [0.0] * 2816 for c in ("gsr", "ecg", "emg_trapezius")}}
    b = client.post("/predict/teacher/pain", files=_files(face_jpeg, json.dumps(quiet).encode(), "s.json",
                                                          "application/json")).json()
    assert b["signal"]["source"] == "json"
    assert a["teacher"]["prediction"]["probabilities"] != b["teacher"]["prediction"]["probabilities"]
    assert a["student"]["prediction"] == b["student"]["prediction"]  # the student never sees the signal


def test_affect_teacher_with_a_wav(client, face_jpeg: bytes) -> None:
    r = client.post("/predict/teacher/affect", files=_files(face_jpeg, wav_bytes(), "voice.wav", "audio/wav"))
    assert r.status_code == 200, r.text
    body = r.json()
    t, s = body["teacher"]["prediction"], body["student"]["prediction"]
    for p in (t, s):
        assert -1 <= p["valence"] <= 1 and -1 <= p["arousal"] <= 1
    a = body["agreement"]
    assert a["valence_difference"] == pytest.approx(s["valence"] - t["valence"])
    assert a["distance"] == pytest.approx(np.hypot(a["valence_difference"], a["arousal_difference"]))
    assert body["signal"]["modality"] == "audio" and body["signal"]["seconds"] == pytest.approx(2.0, abs=0.01)


def test_teacher_with_a_video_clip(client, face_mp4: bytes) -> None:
    files = [("file", ("c.mp4", face_mp4, "video/mp4")), ("signal", ("v.wav", wav_bytes(3.0), "audio/wav"))]
    body = client.post("/predict/teacher/affect", files=files).json()
    assert body["frames_used"] == 4 and body["face_detected"]
    # the audio window is centred on the last frame used (0.8 s at 5 fps), kept inside the 3 s recording
    assert body["signal"]["window_centre_s"] == pytest.approx(0.8)


@pytest.mark.parametrize(("signal", "status", "words"), [
    (biovid_csv(columns=("gsr", "ecg")), 400, "missing column"),
    (biovid_csv(seconds=2.0), 400, "2 s"),
    (biovid_csv(rate=256.0), 400, "256"),
    (b"time\tgsr\tecg\temg_trapezius\n0\tnan\t1\t1\n1953\t1\t1\t1\n", 400, "not finite"),
    (b'{"rate_hz": 100, "channels": {"gsr": [1, 2]}}', 422, "512"),
    (b'{"rate": 512}', 422, "rate_hz"),
    (b"", 400, "empty"),
])
def test_bad_biosignals(client, face_jpeg: bytes, signal: bytes, status: int, words: str) -> None:
    r = client.post("/predict/teacher/pain", files=_files(face_jpeg, signal, "s.csv", "text/csv"))
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_audio_that_is_not_audio(client, face_jpeg: bytes) -> None:
    r = client.post("/predict/teacher/affect", files=_files(face_jpeg, b"RIFF\0\0\0\0WAVEjunk", "x.wav", "audio/wav"))
    assert r.status_code == 400, r.text


def test_teacher_when_no_face(client, noise_jpeg: bytes) -> None:
    body = client.post("/predict/teacher/pain", files=_files(noise_jpeg, biovid_csv(), "s.csv", "text/csv")).json()
    assert body["face_detected"] is False and body["teacher"] is None and body["agreement"] is None


def test_no_teacher_folder_is_404_with_how_to(students_root, face_jpeg: bytes) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.conftest import make_settings

    with TestClient(create_app(make_settings(students_root))) as c:
        r = c.post("/predict/teacher/pain", files=_files(face_jpeg, biovid_csv(), "s.csv", "text/csv"))
        assert r.status_code == 404 and "PKDOT_TEACHER" in r.json()["error"]["message"]
        assert all(m["role"] == "student" for m in c.get("/readyz").json()["models"])


def test_privileged_input_is_the_training_transform(model_root) -> None:
    """The service's signal -> input path gives exactly what training computes with the shared functions."""
    from pkdot_contract.manifest import load_manifest
    from pkdot_contract.preprocessing import signals
    from service.inference.privileged import privileged_input

    m = load_manifest(model_root / "pain-teacher")
    graph_input = next(i for i in m.graphs["model"].inputs if i.name == "privileged")
    data = biovid_csv(seed=3)
    got = privileged_input(m.preprocessing.privileged, graph_input, data, "s.csv").array
    bio = signals.read_biosignal_csv(data)
    window = signals.biosignal_window(bio.channels, 512.0, ["gsr", "ecg", "emg_trapezius"], 0.0, 5.5)
    np.testing.assert_array_equal(got, signals.spectrogram(window, 512.0))  # seconds 2-5 of the window
    assert got.shape == (3, 65, 127)
