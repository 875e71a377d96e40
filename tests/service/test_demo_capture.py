"""scripts/demo-capture.py against the bundled models/: the demo page in headless Chromium, fed a synthetic no-pain
clip (BL1) and a high-pain clip (PA4) by its fake webcam: the images, the page's readings and `pkdot stream` on both.

How far the gauge moves between the clips is a property of the trained models, reported in docs/demo.md; the
held-out accuracy of the models through the service is asserted in test_heldout_models.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.service.browser import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCRIPT = ROOT / "scripts" / "demo-capture.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_capture", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def captured(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, load_script().capture(ROOT / "models", out, chromium=chromium)


def test_the_capture_writes_non_trivial_images(captured: tuple[Path, dict]) -> None:
    import cv2

    out, report = captured
    for name in ("no-pain-BL1.png", "high-pain-PA4.png", "pain-gauge.png"):
        path = out / name
        assert path.is_file(), name
        assert 20_000 < path.stat().st_size < 400_000, (name, path.stat().st_size)
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] >= 300 and image.shape[1] >= 600, name
        assert float(image.std()) > 20, f"{name} is nearly uniform"
    assert json.loads((out / "capture.json").read_text()) == report
    for cls in ("BL1", "PA4"):
        demo = report["demo"][cls]
        assert demo["errors"] == [], demo["errors"]
        assert len(demo["shot_expected"]) == 4 and all(0 <= v <= 4 for v in demo["shot_expected"])
        assert demo["readings"][-1]["faces"] >= 10  # the synthetic face is found
        stream = report["stream"][cls]
        assert stream["summary"]["outcome"] == "completed" and stream["summary"]["errors"] == 0
        assert stream["summary"]["answered"] == stream["summary"]["sent"] > 100
    text = (out / "stream.txt").read_text()
    assert text.count('"type": "summary"') == 2 and "(BL1)" in text and "(PA4)" in text


def test_the_report_holds_what_the_page_displayed(captured: tuple[Path, dict]) -> None:
    _, report = captured
    pa4 = report["demo"]["PA4"]
    displayed = {cls: [r["expected"] for r in report["demo"][cls]["readings"] if r["expected"] is not None]
                 for cls in ("BL1", "PA4")}
    assert all(displayed.values())
    assert pa4["mean_expected"] == pytest.approx(np.mean(displayed["PA4"]), abs=1e-3)
