"""REST prediction routes refuse query parameters they do not declare, naming them."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_unknown_query_parameter_is_refused(client: TestClient, face_jpeg: bytes) -> None:
    files = {"file": ("face.jpg", face_jpeg, "image/jpeg")}
    r = client.post("/predict/pain?modle=pain-student", files=files)
    assert r.status_code == 422
    assert "modle" in r.json()["error"]["message"] and "model" in r.json()["error"]["message"]
    assert client.post("/predict/pain", files=files).status_code == 200  # the next valid request succeeds
