"""The demo page in real headless browsers against a real uvicorn server, with a fake webcam showing a real face.

Chromium (and Firefox ESR) come from Debian: scripts/install-browser.sh installs them when missing; where that is
impossible the tests are skipped with the reason. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.service.browser import ROOT, Chromium, Firefox, Page, install_browser, write_y4m
from tests.service.conftest import LiveServer, make_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = ROOT / "test-artifacts"
KEY = "demo-key-7f3a"


@pytest.fixture(scope="module")
def firefox() -> str:
    path, why = install_browser("firefox")
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def face_y4m(face_rgb: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s (looped by Chromium) of the astronaut's face in a 640x480 frame, moving a few pixels, at 10 fps."""
    import cv2

    face = cv2.resize(face_rgb, (420, 420), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(20):
        dx, dy = round(8 * np.sin(2 * np.pi * i / 20)), round(4 * np.cos(2 * np.pi * i / 20))
        frame = np.full((480, 640, 3), 90, np.uint8)
        frame[30 + dy : 450 + dy, 110 + dx : 530 + dx] = face
        frames.append(frame)
    return write_y4m(tmp_path_factory.mktemp("camera") / "face.y4m", frames, fps=10)


@pytest.fixture
def launch(chromium: str, tmp_path: Path) -> Iterator[Callable[..., Chromium]]:
    """Start a Chromium with a fresh profile: launch(camera=y4m or None, fake_ui=True)."""
    browsers: list[Chromium] = []

    def start(camera: Path | None = None, fake_ui: bool = True) -> Chromium:
        browser = Chromium(chromium, tmp_path / f"profile-{len(browsers)}", camera=camera, fake_ui=fake_ui)
        browsers.append(browser.__enter__())
        return browser

    yield start
    for b in browsers:
        b.close()


@pytest.fixture(scope="module")
def keyed_server(model_root: Path) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(model_root, api_key=KEY)).start()
    yield server
    server.stop()


def number(page: Page, element: str) -> int:
    return int(page.evaluate(f"document.getElementById({element!r}).textContent"))


def answered_at_least(n: int) -> str:
    return f"Number(document.getElementById('stat-answered').textContent) >= {n}"


def message(page: Page) -> str:
    return page.evaluate("document.getElementById('message').hidden ? '' : "
                         "document.getElementById('message').textContent")


def set_key(page: Page, key: str) -> None:
    page.evaluate(f"(() => {{ const k = document.getElementById('api-key'); k.value = {json.dumps(key)}; "
                  "k.dispatchEvent(new Event('change')); })()")


def click(page: Page, selector: str) -> None:
    page.evaluate(f"document.querySelector({selector!r}).click()")


OVERLAY_PIXELS = """(() => { const c = document.getElementById('overlay');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()"""


def test_demo_streams_the_webcam_and_draws_the_predictions(launch, live_server: LiveServer,
                                                           face_y4m: Path) -> None:
    page = launch(camera=face_y4m).new_page(f"{live_server.http}/demo")
    page.wait_for("document.getElementById('server-status').dataset.state === 'ok'", what="the server check")
    assert "ready" in page.evaluate("document.getElementById('server-status').textContent")
    click(page, "#start")
    page.wait_for(answered_at_least(12), timeout=60, what="12 answers")

    assert number(page, "stat-sent") >= number(page, "stat-answered") >= 12
    assert number(page, "stat-faces") >= 10  # the astronaut's face is found in (nearly) every frame
    assert re.fullmatch(r"\d+ / \d+ ms", page.evaluate("document.getElementById('stat-latency').textContent"))
    # the pain gauge: five probabilities, summing to 100 %, and the most likely level named
    probs = page.evaluate("[...document.querySelectorAll('#probs .p')].map(e => e.textContent)")
    assert len(probs) == 5 and all(p.endswith("%") for p in probs)
    assert sum(float(p[:-1]) for p in probs) == pytest.approx(100, abs=0.5)
    assert page.evaluate("document.getElementById('pain-level').textContent") in ("BL1", "PA1", "PA2", "PA3", "PA4")
    assert 0 <= float(page.evaluate("document.getElementById('pain-expected').textContent")) <= 4
    # the face box, in the frame's pixels, drawn on the overlay; the face is in the upper middle of the frame
    x, y, w, h = map(int, page.evaluate("document.getElementById('overlay').dataset.box").split(","))
    assert 150 < x < 400 and 20 < y < 250 and 50 < w < 250 and 50 < h < 250
    assert page.evaluate(OVERLAY_PIXELS) > 4 * (w + h)
    assert page.evaluate("document.getElementById('overlay').width") == 640
    assert message(page) == ""
    page.screenshot(ARTIFACTS / "demo.png")

    click(page, "#calibrate")
    page.wait_for("document.getElementById('message').textContent.startsWith('Baseline set')", timeout=30,
                  what="the calibrated baseline")
    page.wait_for("!document.getElementById('pain-relative').hidden", what="a reading relative to the baseline")
    assert "vs baseline" in page.evaluate("document.getElementById('pain-relative').textContent")

    click(page, "input[value=affect]")
    page.wait_for("document.getElementById('server-status').textContent.includes('affect')", what="the task switch")
    page.wait_for(answered_at_least(8), timeout=60, what="8 affect answers")
    v, a = map(float, page.wait_for("document.getElementById('circumplex').dataset.point",
                                    what="the valence/arousal point").split(","))
    assert -1 <= v <= 1 and -1 <= a <= 1
    assert page.evaluate("document.getElementById('pain-panel').hidden") is True
    page.screenshot(ARTIFACTS / "demo-affect.png")

    click(page, "#start")  # Stop
    page.wait_for("document.getElementById('start').textContent === 'Start camera'", what="the stop")
    assert page.errors == []


def test_demo_with_an_api_key(launch, keyed_server: LiveServer, face_y4m: Path) -> None:
    page = launch(camera=face_y4m).new_page(f"{keyed_server.http}/demo")
    page.wait_for("document.getElementById('key-field').classList.contains('needed')", what="the API key hint")
    assert "needs an API key" in message(page)

    click(page, "#start")  # without the key: the stream is refused with 1008, and the page says why
    page.wait_for("document.getElementById('server-status').textContent === 'refused'", what="the refusal")
    assert "needs an API key" in message(page)
    set_key(page, "wrong")
    page.wait_for("document.getElementById('message').textContent.includes('refused this API key')",
                  what="the wrong key refused by /v1/models")
    click(page, "#start")
    page.wait_for("document.getElementById('message').textContent.includes('Check it, then press Start camera')",
                  what="the stream with the wrong key refused")

    set_key(page, KEY)  # sent as the first WebSocket message, never in the URL
    page.wait_for("!document.getElementById('key-field').classList.contains('needed')", what="the key accepted")
    click(page, "#start")
    page.wait_for(answered_at_least(6), timeout=60, what="6 answers with the key")
    assert number(page, "stat-faces") >= 4
    assert message(page) == ""
    page.screenshot(ARTIFACTS / "demo-api-key.png")
    assert page.errors == []


def test_demo_says_when_there_is_no_camera_or_no_permission(launch, live_server: LiveServer,
                                                           face_y4m: Path) -> None:
    page = launch(camera=None).new_page(f"{live_server.http}/demo")  # headless Chromium has no camera
    click(page, "#start")
    page.wait_for("document.getElementById('message').textContent.includes('No camera')", what="no camera")

    page = launch(camera=face_y4m, fake_ui=False).new_page(f"{live_server.http}/demo")  # the prompt is refused
    click(page, "#start")
    page.wait_for("document.getElementById('message').textContent.includes('permission was denied')",
                  what="permission denied")
    assert number(page, "stat-sent") == 0


def test_demo_says_when_the_server_goes_away(launch, model_root: Path, face_y4m: Path) -> None:
    server = LiveServer(make_settings(model_root)).start()
    try:
        page = launch(camera=face_y4m).new_page(f"{server.http}/demo")
        click(page, "#start")
        page.wait_for(answered_at_least(3), timeout=60, what="3 answers")
    finally:
        server.stop()
    page.wait_for("document.getElementById('message').textContent.includes('Cannot reach the server')",
                  timeout=30, what="the server unreachable")
    assert page.evaluate("document.getElementById('server-status').textContent") == "server unreachable"
    page.screenshot(ARTIFACTS / "demo-server-down.png")


# Firefox's fake camera shows a test pattern, and it reads no video file: to show it a face, the page's camera is
# replaced by a canvas stream of the same astronaut (the page's own code path from getUserMedia on is unchanged).
FACE_CAMERA = """(async () => {
  const img = new Image();
  img.src = %s;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 480;
  const g = canvas.getContext('2d');
  let i = 0;
  const draw = () => { g.fillStyle = '#5a5a5a'; g.fillRect(0, 0, 640, 480);
                       g.drawImage(img, 110 + Math.round(8 * Math.sin(i++ / 3)), 30, 420, 420); };
  draw();
  setInterval(draw, 100);
  const stream = canvas.captureStream(10);
  navigator.mediaDevices.getUserMedia = async () => stream;
  return true;
})()"""


def test_demo_in_firefox(firefox: str, live_server: LiveServer, face_jpeg: bytes, tmp_path: Path) -> None:
    with Firefox(firefox, tmp_path / "firefox") as browser:
        page = browser.new_page(f"{live_server.http}/demo")
        page.wait_for("document.getElementById('server-status').dataset.state === 'ok'", what="the server check")
        # Firefox's own fake camera: getUserMedia, JPEG capture and the stream work; its pattern holds no face
        click(page, "#start")
        page.wait_for(answered_at_least(4), timeout=60, what="4 answers")
        page.wait_for("document.getElementById('message').textContent.startsWith('No face found')", what="no face")
        assert number(page, "stat-faces") == 0
        click(page, "#start")  # Stop

        data_url = "data:image/jpeg;base64," + base64.b64encode(face_jpeg).decode()
        assert page.evaluate(FACE_CAMERA % json.dumps(data_url)) is True
        click(page, "#start")
        page.wait_for(answered_at_least(8), timeout=60, what="8 answers")
        page.wait_for("Number(document.getElementById('stat-faces').textContent) >= 5", what="5 faces")
        probs = page.evaluate("[...document.querySelectorAll('#probs .p')].map(e => e.textContent)")
        assert sum(float(p[:-1]) for p in probs) == pytest.approx(100, abs=0.5)
        x, y, w, h = map(int, page.evaluate("document.getElementById('overlay').dataset.box").split(","))
        assert 150 < x < 400 and 20 < y < 250 and 50 < w < 250
        assert page.evaluate(OVERLAY_PIXELS) > 4 * (w + h)
        page.wait_for("document.getElementById('message').hidden", what="the no-face message to clear")
        page.screenshot(ARTIFACTS / "demo-firefox.png")
        assert page.errors == []
