"""The shared frame -> model input path: decoding, face detection, crop, normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pkdot_contract.preprocessing.crop import CropSpec, crop_face, to_model_input
from pkdot_contract.preprocessing.face import FaceBox
from pkdot_contract.preprocessing.media import MediaError, decode_image, image_size_from_header


def test_header_size_without_decoding(face_jpeg: bytes, face_png: bytes) -> None:
    assert image_size_from_header(face_jpeg) == (512, 512)
    assert image_size_from_header(face_png) == (512, 512)
    assert image_size_from_header(b"GIF89a....") is None


def test_decode_roundtrip(face_rgb: np.ndarray, face_png: bytes, face_jpeg: bytes) -> None:
    np.testing.assert_array_equal(decode_image(face_png), face_rgb)  # PNG is lossless
    jpeg = decode_image(face_jpeg).astype(np.int16)
    assert jpeg.shape == face_rgb.shape
    assert np.abs(jpeg - face_rgb).mean() < 3.0


def test_decode_grey_png_becomes_rgb() -> None:
    ok, buf = cv2.imencode(".png", np.full((10, 20), 128, np.uint8))
    rgb = decode_image(buf.tobytes())
    assert rgb.shape == (10, 20, 3) and (rgb == 128).all()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text", "not a JPEG or PNG"),
        (b"\xff\xd8\xff", "truncated or corrupt"),
    ],
)
def test_decode_rejects_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        decode_image(data)


def test_decode_rejects_truncated_jpeg(face_jpeg: bytes) -> None:
    with pytest.raises(MediaError):
        decode_image(face_jpeg[:400])


def test_decompression_bomb_refused_from_header() -> None:
    # a 20000 x 20000 PNG header: refused before any pixel is decoded
    ok, buf = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big")
    with pytest.raises(MediaError, match="20000x20000"):
        decode_image(bytes(data), max_pixels=40_000_000)


def test_detector_finds_the_astronaut(face_detector, face_rgb: np.ndarray) -> None:
    box = face_detector.largest(face_rgb)
    assert box is not None and box.score > 0.8
    # the face is in the upper middle of the portrait
    assert 150 < box.x + box.w / 2 < 300 and 80 < box.y + box.h / 2 < 200
    assert 60 < box.w < 160


def test_detector_finds_no_face_in_noise(face_detector) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    assert face_detector.largest(noise) is None


def test_crop_centres_the_box() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:100, 100:150] = 255  # a white 50x50 square
    spec = CropSpec(size=64, margin=0.0)
    crop = crop_face(img, FaceBox(100, 50, 50, 50, 1.0), spec)
    assert crop.shape == (64, 64, 3)
    assert crop[2:-2, 2:-2].min() == 255  # margin 0: the crop is the box


def test_crop_margin_and_edges() -> None:
    img = np.full((100, 100, 3), 7, np.uint8)
    crop = crop_face(img, FaceBox(0, 0, 20, 20, 1.0), CropSpec(size=32, margin=0.5))
    assert crop.shape == (32, 32, 3) and (crop == 7).all()  # outside the frame: edge-replicated


def test_model_input_normalisation() -> None:
    spec = CropSpec(size=8)
    crops = np.zeros((2, 8, 8, 3), np.uint8)
    crops[..., 0] = 255
    x = to_model_input(crops, spec)
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], (1.0 - 0.485) / 0.229, rtol=1e-6)
    np.testing.assert_allclose(x[:, 2], (0.0 - 0.406) / 0.225, rtol=1e-6)
    bgr = to_model_input(crops, CropSpec(size=8, colour="BGR"))
    np.testing.assert_allclose(bgr[:, 2], (1.0 - 0.406) / 0.225, rtol=1e-6)


def test_crop_spec_roundtrip_and_validation() -> None:
    spec = CropSpec(size=96, margin=0.3)
    assert CropSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError):
        CropSpec(size=4)
    with pytest.raises(ValueError):
        CropSpec(colour="YUV")


def test_to_model_input_rejects_float() -> None:
    with pytest.raises(ValueError):
        to_model_input(np.zeros((8, 8, 3), np.float32), CropSpec(size=8))
