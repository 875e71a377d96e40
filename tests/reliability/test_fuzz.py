"""Fuzzing: schemathesis against the service's own OpenAPI schema, and Hypothesis properties for preprocessing.

Schemathesis generates requests from /openapi.json (valid ones, and invalid ones: wrong types, missing parts,
random bytes as images) and sends them to the real server on loopback, with the API key on. Every answer must be
documented for its operation, match its schema and content type, and never be a 5xx; invalid requests must be
refused. The Hypothesis properties throw any image size, aspect, colour mode and bit depth, and arbitrary bytes,
at the shared preprocessing: the result is a valid model input or a clean `MediaError` / `SignalError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from pkdot_contract.preprocessing.crop import CropSpec, crop_face, to_model_input
from pkdot_contract.preprocessing.face import FaceBox
from pkdot_contract.preprocessing.media import MediaError, decode_audio, decode_image, image_size_from_header
from pkdot_contract.preprocessing.signals import SignalError, read_biosignal_csv
from service.core.errors import ServiceError
from tests.reliability.conftest import Figures, ProbedServer
from tests.service.conftest import make_settings

KEY = "fuzz-key-7d1e"
EXAMPLES = int(os.environ.get("PKDOT_FUZZ_EXAMPLES", "25"))  # per operation and generation mode
PROPERTY_EXAMPLES = int(os.environ.get("PKDOT_PROPERTY_EXAMPLES", "150"))
QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
         HealthCheck.function_scoped_fixture]
TRIED: Counter[str] = Counter()  # examples run per property, and how many of them ended in a clean error
REFUSED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _count_examples(figures: Figures) -> Iterator[None]:
    yield
    for name, n in TRIED.items():
        figures.add("properties", property=name, examples=n, clean_errors=REFUSED[name], crashes=0)


# -- schemathesis ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_server(model_root: Path) -> Iterator[ProbedServer]:
    settings = make_settings(model_root, api_key=KEY, max_request_bytes=1_000_000, max_files=4, detector_workers=1,
                             preprocess_threads=2, inference_threads=1, ort_intra_op_threads=1)
    server = ProbedServer(settings).start()
    yield server
    server.stop()


def _checks() -> list:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks as oas

    return [not_a_server_error, oas.status_code_conformance, oas.content_type_conformance,
            oas.response_headers_conformance, oas.response_schema_conformance, oas.negative_data_rejection,
            oas.missing_required_header, oas.ignored_auth]


def _fuzz(operation, generation, base_url: str, failures: list[str]) -> Counter[int]:
    """Send EXAMPLES generated requests for one operation; the statuses seen. Check failures go to `failures`."""
    from schemathesis.core.failures import FailureGroup

    statuses: Counter[int] = Counter()
    checks = _checks()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=QUIET, derandomize=True, database=None)
    @given(case=operation.as_strategy(generation_mode=generation))
    def send(case) -> None:
        response = case.call(base_url=base_url, headers={"X-API-Key": KEY}, timeout=60)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=checks, headers={"X-API-Key": KEY},
                                   transport_kwargs={"base_url": base_url})
        except FailureGroup as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")

    with contextlib.suppress(Unsatisfiable):  # negative mode, no parameter or body: nothing can be made invalid
        send()
    return statuses


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_against_the_openapi_schema(keyed_server: ProbedServer, figures: Figures, mode: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import schemathesis
        from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{keyed_server.http}/openapi.json")
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    failures: list[str] = []
    total: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        statuses = _fuzz(operation, generation, keyed_server.http, failures)
        assert keyed_server.thread.is_alive()
        five = sum(n for s, n in statuses.items() if s >= 500)
        total.update({"requests": sum(statuses.values()), "5xx": five})
        figures.add("fuzz", mode=mode, operation=operation.label, requests=sum(statuses.values()),
                    statuses=dict(sorted(statuses.items())), server_errors=five)
    assert not failures, "\n\n".join(failures[:5])
    assert total["requests"] > 0 and total["5xx"] == 0


# -- Hypothesis: images ------------------------------------------------------------------------------------------------


@st.composite
def images(draw: st.DrawFn) -> tuple[bytes, tuple[int, int]]:
    """Any size (1 to 300 px a side, aspect up to 300:1), grey / colour / alpha, 8 or 16 bits, PNG or JPEG."""
    h = draw(st.integers(1, 300))
    w = draw(st.integers(1, 300))
    channels = draw(st.sampled_from([1, 3, 4]))
    fmt = draw(st.sampled_from([".png", ".jpg"]))
    deep = fmt == ".png" and draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype, top = (np.uint16, 65535) if deep else (np.uint8, 255)
    pixels = rng.integers(0, top, (h, w, channels) if channels > 1 else (h, w), dtype=dtype, endpoint=True)
    if fmt == ".jpg" and channels == 4:
        pixels = pixels[..., :3]
    ok, buf = cv2.imencode(fmt, pixels)
    assert ok
    return buf.tobytes(), (w, h)


@st.composite
def boxes(draw: st.DrawFn, w: int, h: int) -> FaceBox:
    """A face box of at least one pixel anywhere near the frame, partly or wholly outside it."""
    bw = draw(st.floats(1.0, 2.0 * max(w, h)))
    bh = draw(st.floats(1.0, 2.0 * max(w, h)))
    x = draw(st.floats(-bw, float(w)))
    y = draw(st.floats(-bh, float(h)))
    return FaceBox(x, y, bw, bh, draw(st.floats(0.0, 1.0)))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=QUIET, database=None)
@given(image=images(), data=st.data(), size=st.sampled_from([8, 32, 112]),
       colour=st.sampled_from(["RGB", "BGR"]), margin=st.floats(0.0, 2.0))
def test_any_image_becomes_a_valid_model_input(image: tuple[bytes, tuple[int, int]], data: st.DataObject, size: int,
                                               colour: str, margin: float) -> None:
    TRIED["image of any size, aspect, colour mode, depth -> model input"] += 1
    encoded, (w, h) = image
    assert image_size_from_header(encoded) == (w, h)
    rgb = decode_image(encoded)
    assert rgb.dtype == np.uint8 and rgb.shape == (h, w, 3) and rgb.flags.c_contiguous
    spec = CropSpec(size=size, margin=margin, colour=colour)
    box = data.draw(boxes(w, h))
    x = to_model_input(crop_face(rgb, box, spec), spec)
    assert x.dtype == np.float32 and x.shape == (3, size, size) and np.isfinite(x).all()
    lo = (0.0 - max(spec.mean)) / min(spec.std)
    hi = (1.0 - min(spec.mean)) / min(spec.std)
    assert lo - 1e-4 <= x.min() and x.max() <= hi + 1e-4


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=QUIET, database=None)
@given(head=st.sampled_from([b"", b"\xff\xd8", b"\xff\xd8\xff\xc0", b"\x89PNG\r\n\x1a\n", b"RIFF", b"GIF89a"]),
       body=st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_fail_cleanly(head: bytes, body: bytes) -> None:
    name = "arbitrary bytes behind an image signature -> image or MediaError"
    TRIED[name] += 1
    data = head + body
    size = image_size_from_header(data)
    assert size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size))
    try:
        rgb = decode_image(data, max_pixels=4_000_000)
    except MediaError as exc:
        REFUSED[name] += 1
        assert str(exc)
    else:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@pytest.fixture(scope="module")
def valid_images(face_jpeg: bytes, face_png: bytes) -> list[bytes]:
    return [face_jpeg, face_png]


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=QUIET, database=None)
@given(which=st.integers(0, 1), flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8),
       cut=st.floats(0.05, 1.0))
def test_damaged_images_decode_or_fail_cleanly(valid_images: list[bytes], which: int, flips: list, cut: float) -> None:
    name = "JPEG/PNG cut short and bytes flipped -> image or MediaError"
    TRIED[name] += 1
    data = bytearray(valid_images[which][: max(8, int(len(valid_images[which]) * cut))])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    try:
        rgb = decode_image(bytes(data), max_pixels=4_000_000)
    except MediaError:
        REFUSED[name] += 1
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


# -- Hypothesis: signals -----------------------------------------------------------------------------------------------


CELLS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                  st.text(max_size=6), st.sampled_from(["", "nan", "1e999", "-0", "0x10", " 1 "]))
MUTATIONS = [None, None, None, "crlf", "nan cell", "text cell", "huge cell", "short row", "comma separated",
             "time repeats", "unknown column", "junk row", "blank lines"]


@st.composite
def biosignal_texts(draw: st.DrawFn) -> tuple[str, str | None]:
    """A BioVid-style file (columns in any order, any length, rate, values), often damaged in one way."""
    optional = draw(st.lists(st.sampled_from(["emg_corrugator", "emg_zygomaticus"]), unique=True))
    header = draw(st.permutations(["time", "gsr", "ecg", "emg_trapezius", *optional]))
    n = draw(st.integers(2, 30))
    step_us = draw(st.floats(50.0, 50_000.0))
    values = draw(st.lists(st.floats(-1e30, 1e30), min_size=n * (len(header) - 1),
                           max_size=n * (len(header) - 1)))
    rows = []
    for i in range(n):
        row = iter(values[i * (len(header) - 1) : (i + 1) * (len(header) - 1)])
        rows.append([str(round(i * step_us)) if h == "time" else repr(next(row)) for h in header])
    mutation = draw(st.sampled_from(MUTATIONS))
    r, c = draw(st.integers(0, n - 1)), draw(st.integers(0, len(header) - 1))
    sep, newline = "\t", "\n"
    if mutation == "crlf":
        newline = "\r\n"
    elif mutation in ("nan cell", "text cell", "huge cell"):
        rows[r][c] = {"nan cell": "nan", "huge cell": "-1e39"}.get(mutation) or draw(CELLS)
    elif mutation == "short row":
        rows[r] = rows[r][:-1]
    elif mutation == "comma separated":
        sep = ","
    elif mutation == "time repeats" and n > 2:
        rows[1][header.index("time")] = rows[0][header.index("time")]
    elif mutation == "unknown column":
        header = [*header[:-1], "heart"]
    elif mutation == "junk row":
        rows.insert(r, draw(st.lists(CELLS, min_size=1, max_size=6)))
    elif mutation == "blank lines":
        rows.append([""])
    return newline.join(sep.join(line) for line in [header, *rows]), mutation


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=QUIET, database=None)
@given(file=biosignal_texts())
def test_any_biosignal_text_is_read_or_refused_cleanly(file: tuple[str, str | None]) -> None:
    name = "any biosignal CSV text -> channels or SignalError"
    TRIED[name] += 1
    text, mutation = file
    try:
        bio = read_biosignal_csv(text.encode(), name="s.csv", expected_rate_hz=None)
    except SignalError as exc:
        REFUSED[name] += 1
        assert str(exc).startswith("s.csv")
        assert mutation not in (None, "crlf", "blank lines"), f"a valid file was refused: {exc}"
        return
    lengths = {len(v) for v in bio.channels.values()}
    assert bio.rate_hz > 0 and np.isfinite(bio.rate_hz) and len(lengths) == 1
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in bio.channels.values())


@pytest.fixture(scope="module")
def pain_teacher_spec(model_root: Path):
    from pkdot_contract.manifest import load_manifest

    m = load_manifest(model_root / "pain-teacher")
    return m.preprocessing.privileged, next(i for i in m.graphs["model"].inputs if i.name == "privileged")


JUNK = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=12)


@st.composite
def json_signals(draw: st.DrawFn) -> dict:
    """{"rate_hz", "channels"}: usually well formed (5.5 s or more at about 512 Hz, any finite float32 values),
    sometimes with one thing wrong (rate, a channel missing or unknown, a value, a type, the length)."""
    n = draw(st.sampled_from([2816, 2900, 3500]))
    channels = {}
    for ch in draw(st.permutations(["gsr", "ecg", "emg_trapezius"])):
        pattern = draw(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
        channels[ch] = (pattern * (n // len(pattern) + 1))[:n]
    signal: dict = {"rate_hz": draw(st.sampled_from([512, 512.0, 511.0, 515.5])), "channels": channels}
    fault = draw(st.sampled_from([None, None, "rate", "missing", "unknown", "value", "type", "length", "junk"]))
    if fault == "rate":
        signal["rate_hz"] = draw(st.one_of(st.floats(), st.integers(), st.text(max_size=3), st.none(), JUNK))
    elif fault == "missing":
        channels.pop(draw(st.sampled_from(sorted(channels))))
    elif fault == "unknown":
        channels[draw(st.text(max_size=8))] = channels["gsr"]
    elif fault == "value":
        channels["ecg"][draw(st.integers(0, n - 1))] = draw(st.one_of(st.sampled_from([1e39, -1e300, "1", None]), JUNK))
    elif fault == "type":
        channels["gsr"] = draw(JUNK)
    elif fault == "length":
        channels["emg_trapezius"] = channels["emg_trapezius"][: draw(st.integers(0, n - 1))]
    elif fault == "junk":
        signal = draw(st.dictionaries(st.sampled_from(["rate_hz", "channels", "x"]), JUNK))
    return signal


@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=QUIET, database=None)
@given(signal=json_signals())
def test_any_json_signal_becomes_a_teacher_input_or_a_clean_error(pain_teacher_spec, signal: dict) -> None:
    from service.inference.privileged import privileged_input

    name = "any JSON signal -> teacher input or 4xx error"
    TRIED[name] += 1
    spec, graph_input = pain_teacher_spec
    data = json.dumps(signal).encode()
    try:
        x = privileged_input(spec, graph_input, data, "s.json").array
    except (ServiceError, SignalError) as exc:
        REFUSED[name] += 1
        assert 400 <= getattr(exc, "status", 400) < 500 and str(exc)
        return
    assert x.dtype == np.float32 and x.shape == (3, 65, 127) and np.isfinite(x).all()


@settings(max_examples=PROPERTY_EXAMPLES // 3, deadline=None, suppress_health_check=QUIET, database=None)
@given(body=st.binary(max_size=4096), head=st.sampled_from([b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"ID3", b"OggS"]))
def test_arbitrary_bytes_as_audio_decode_or_fail_cleanly(body: bytes, head: bytes) -> None:
    name = "arbitrary bytes as audio -> samples or MediaError"
    TRIED[name] += 1
    try:
        audio = decode_audio(head + body, sample_rate=16000)
    except MediaError as exc:
        REFUSED[name] += 1
        assert str(exc)
        return
    assert audio.dtype == np.float32 and audio.ndim == 1
