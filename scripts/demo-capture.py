"""Screenshots of the live demo's pain gauge on a synthetic no-pain clip (BL1) and a high-pain clip (PA4).

    .venv/bin/python scripts/demo-capture.py                       # models/ -> docs/demo/
    .venv/bin/python scripts/demo-capture.py --models runs/x --out /tmp/demo

Writes a held-out synthetic BioVid set (seed 7, 2 subjects, 1 sample per class) into a temporary folder, takes
one subject's BL1 and PA4 clips and writes each, after a neutral lead-in (the same subject's BL1 clip), into a
640x480, 25 fps Y4M file for headless Chromium's fake webcam (which loops it). The lead-in gives the student's
window a neutral first frame, as a clip streamed from its start has: the student reads each frame against the
first of its 5.5 s window. It starts `pkdot serve` on a free loopback port, opens /demo with that camera and
streams the pain task. Per clip: SHOTS screenshots over SPAN_S seconds (one lead-in and clip cycle), composed
into OUT/no-pain-BL1.png and OUT/high-pain-PA4.png; both rows in OUT/pain-gauge.png (no pain on top). The
expected level the page displays is read from its DOM every SAMPLE_S seconds meanwhile; OUT/capture.json holds
those readings. `pkdot stream CLIP --json --fast` on the same two clips goes to OUT/stream.txt (its summary line
and the mean smoothed expected level).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.service.browser and the project's packages, when run as a script
    sys.path.insert(0, str(ROOT))

CLIPS = {"BL1": "no pain", "PA4": "high pain"}  # class -> caption, in the order of the summary's rows
FILES = {"BL1": "no-pain-BL1.png", "PA4": "high-pain-PA4.png"}
SEED, SUBJECTS = 7, 2
CAMERA = (640, 480)
FPS = 25
DEMO_FPS = 10  # frames per second the page sends
WARMUP_ANSWERS = 8  # answers before the first screenshot: the model's window is full
SHOTS = 4
SPAN_S = 11.0  # a lead-in and a clip
SAMPLE_S = 0.25
TILE_WIDTH = 560  # each screenshot in the contact sheets, downscaled to this width
READY_TIMEOUT_S = 120.0

READING = """(() => {
  const e = document.getElementById('pain-expected').textContent;
  return {expected: Number.isFinite(Number(e)) && e !== '' ? Number(e) : null,
          level: document.getElementById('pain-level').textContent,
          answered: Number(document.getElementById('stat-answered').textContent),
          faces: Number(document.getElementById('stat-faces').textContent)};
})()"""

CROP = """(() => { const r = document.querySelector('main').getBoundingClientRect();
  return [Math.floor(r.left), Math.floor(r.top), Math.ceil(r.width),
          Math.ceil(Math.min(r.height, innerHeight - r.top))];
})()"""


def shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synth_clips(folder: Path) -> dict[str, Path]:
    """The held-out synthetic set in `folder`; the first subject's BL1 and PA4 clips, by class."""
    import csv

    from training.data.synth import write_biovid

    write_biovid(folder, subjects=SUBJECTS, samples_per_class=1, seed=SEED, force=True)
    with open(folder / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    subject = rows[0]["subject_name"]
    return {row["class_name"]: folder / "video" / subject / f"{row['sample_name']}.mp4"
            for row in rows if row["subject_name"] == subject and row["class_name"] in CLIPS}


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video, RGB uint8."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def camera_file(clip: Path, lead_in: Path, out: Path) -> Path:
    """`lead_in`, then the clip, upscaled to CAMERA, as a Y4M file for Chromium's fake webcam (which loops it)."""
    import cv2

    from tests.service.browser import write_y4m

    frames = [cv2.resize(f, CAMERA, interpolation=cv2.INTER_CUBIC) for f in decode(lead_in) + decode(clip)]
    return write_y4m(out, frames, fps=FPS)


class Service:
    """`pkdot serve` on a free loopback port, ready on /readyz: `with Service(models, log) as url:`."""

    def __init__(self, models: Path, log: Path) -> None:
        self.models, self.log, self.port = models, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        command = [sys.executable, "-m", "pkdot", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--models-dir", str(self.models), "--providers", "cpu", "--log-format", "text",
                   "--log-level", "warning"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pkdot serve exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1.0) as reply:
                    if reply.status == 200:
                        return self.url
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"pkdot serve was not ready after {READY_TIMEOUT_S:g} s; see {self.log}")
            time.sleep(0.25)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def record_demo(chromium: str, url: str, camera: Path, profile: Path) -> tuple[list[np.ndarray], dict]:
    """Stream `camera` from /demo (pain task, DEMO_FPS): SHOTS screenshots (RGB, cropped to the page's main area)
    over SPAN_S seconds, and the expected level the page displayed every SAMPLE_S seconds."""
    import cv2

    from tests.service.browser import Chromium

    shots: list[np.ndarray] = []
    readings: list[dict] = []
    with Chromium(chromium, profile, camera=camera) as browser:
        page = browser.new_page(f"{url}/demo")
        page.wait_for("document.getElementById('server-status').dataset.state === 'ok'", what="the server check")
        page.evaluate("(() => { document.querySelector('input[value=pain]').click(); const f = "
                      f"document.getElementById('fps'); f.value = '{DEMO_FPS}'; "
                      "f.dispatchEvent(new Event('change')); })()")
        page.evaluate("document.getElementById('start').click()")
        page.wait_for(f"Number(document.getElementById('stat-answered').textContent) >= {WARMUP_ANSWERS} && "
                      "document.getElementById('pain-expected').textContent !== '\\u2013'", timeout=90,
                      what=f"{WARMUP_ANSWERS} answers with a pain reading")
        x, y, w, h = page.evaluate(CROP)
        start = time.monotonic()
        shot_times = [i * SPAN_S / (SHOTS - 1) for i in range(SHOTS)]
        while len(shots) < SHOTS:
            now = time.monotonic() - start
            reading = page.evaluate(READING)
            readings.append({"t": round(now, 2), **reading})
            if now >= shot_times[len(shots)]:
                png = np.frombuffer(page.screenshot_png(), np.uint8)
                rgb = cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                shots.append(rgb[y: y + h, x: x + w])
                readings[-1]["shot"] = len(shots)
            time.sleep(SAMPLE_S)
        page.evaluate("document.getElementById('start').click()")  # Stop
        errors = list(page.errors)
    values = [r["expected"] for r in readings if r["expected"] is not None]
    return shots, {"readings": readings, "errors": errors,
                   "mean_expected": round(float(np.mean(values)), 3) if values else None,
                   "shot_expected": [r["expected"] for r in readings if "shot" in r],
                   "shot_levels": [r["level"] for r in readings if "shot" in r]}


def _label(image: np.ndarray, text: str, scale: float = 0.6, height: int = 30) -> np.ndarray:
    """`image` with a dark caption bar of `text` above it."""
    import cv2

    bar = np.full((height, image.shape[1], 3), (22, 27, 34), np.uint8)
    cv2.putText(bar, text, (8, height - 9), cv2.FONT_HERSHEY_SIMPLEX, scale, (230, 237, 243), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def _tile(shot: np.ndarray, width: int) -> np.ndarray:
    import cv2

    h = round(shot.shape[0] * width / shot.shape[1])
    return cv2.resize(shot, (width, h), interpolation=cv2.INTER_AREA)


def sheet(cls: str, shots: list[np.ndarray], info: dict, width: int = TILE_WIDTH) -> np.ndarray:
    """One clip's screenshots in a 2 x 2 grid, each captioned with its time and displayed reading."""
    tiles = []
    for i, shot in enumerate(shots):
        t = i * SPAN_S / (len(shots) - 1)
        tiles.append(_label(_tile(shot, width), f"t = {t:.1f} s   shown: {info['shot_levels'][i]}, expected "
                                                f"level {info['shot_expected'][i]}", scale=0.5, height=24))
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    cols = 2
    rows = [np.hstack(tiles[r: r + cols]) for r in range(0, len(tiles), cols)]
    title = f"{CLIPS[cls]} ({cls}), synthetic held-out clip: mean displayed expected level {info['mean_expected']}"
    return _label(np.vstack(rows), title)


def summary(results: dict[str, tuple[list[np.ndarray], dict]], width: int = 300) -> np.ndarray:
    """Every clip as one row of its screenshots (no pain on top, high pain below), each row captioned."""
    rows = []
    for cls, (shots, info) in results.items():
        tiles = [_label(_tile(s, width), f"{info['shot_levels'][i]}  {info['shot_expected'][i]}", 0.45, 20)
                 for i, s in enumerate(shots)]
        h = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
        rows.append(_label(np.hstack(tiles), f"{CLIPS[cls]} ({cls}): mean expected level {info['mean_expected']}"))
    return _label(np.vstack(rows), "PKDOT /demo, headless Chromium fake webcam, pain gauge over ~6 s", 0.65, 32)


def write_png(path: Path, rgb: np.ndarray, limit: int = 400_000) -> Path:
    """An RGB image as a PNG, downscaled until it is under `limit` bytes."""
    import cv2

    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    while True:
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise RuntimeError(f"could not encode {path}")
        if buf.size < limit or image.shape[1] < 400:
            break
        image = cv2.resize(image, None, fx=0.85, fy=0.85, interpolation=cv2.INTER_AREA)
    path.write_bytes(buf.tobytes())
    return path


def stream_clip(clip: Path, url: str) -> dict:
    """`pkdot stream CLIP --json --fast` against `url`: its summary line, and the mean smoothed expected level."""
    ws = url.replace("http://", "ws://")
    pkdot = Path(sys.executable).with_name("pkdot")
    command = [str(pkdot), "stream", str(clip), "--json", "--fast", "--url", ws]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines or lines[-1].get("type") != "summary":
        raise RuntimeError(f"pkdot stream failed ({done.returncode}): {done.stderr[-2000:]}")
    smoothed = [m["smoothed"] for m in lines if m.get("type") == "result" and m.get("smoothed")]
    levels = [s["expected_level"] for s in smoothed]
    return {"command": f"pkdot stream {clip.name} --json --fast --url ws://127.0.0.1:PORT", "summary": lines[-1],
            "mean_expected": round(float(np.mean(levels)), 3) if levels else None,
            "last": {k: smoothed[-1][k] for k in ("label", "expected_level")} if smoothed else None}


def capture(models: Path, out: Path, chromium: str | None = None) -> dict:
    """The whole capture (see the module's docstring) into `out`; returns what OUT/capture.json holds."""
    from tests.service.browser import install_browser

    if chromium is None:
        chromium, why = install_browser("chromium")
        if chromium is None:
            raise RuntimeError(why)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: dict[str, tuple[list[np.ndarray], dict]] = {}
    streams: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pkdot-demo-") as tmp:
        work = Path(tmp)
        clips = synth_clips(work / "biovid")
        cameras = {cls: camera_file(clips[cls], clips["BL1"], work / f"{cls}.y4m") for cls in CLIPS}
        with Service(models.resolve(), work / "serve.log") as url:
            for cls in CLIPS:
                results[cls] = record_demo(chromium, url, cameras[cls], work / f"profile-{cls}")
                streams[cls] = stream_clip(clips[cls], url)
        names = {cls: clips[cls].name for cls in CLIPS}
    for cls, (shots, info) in results.items():
        write_png(out / FILES[cls], sheet(cls, shots, info))
    write_png(out / "pain-gauge.png", summary(results))
    lines = [f"# pkdot stream on the synthetic held-out clips (seed {SEED}), models: {shown(models)}", ""]
    for cls, s in streams.items():
        lines += [f"## {CLIPS[cls]} ({cls}): {names[cls]}", f"$ {s['command']}", json.dumps(s["summary"]),
                  f"mean smoothed expected level {s['mean_expected']}; last smoothed {json.dumps(s['last'])}", ""]
    (out / "stream.txt").write_text("\n".join(lines))
    report = {"models": shown(models), "seed": SEED, "clips": names, "seconds": round(time.monotonic() - t0, 1),
              "demo": {cls: info for cls, (_, info) in results.items()}, "stream": streams}
    (out / "capture.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "models", help="models folder to serve (default models/)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "demo", help="output folder (default docs/demo)")
    args = p.parse_args(argv)
    report = capture(args.models, args.out)
    for cls in CLIPS:
        demo, stream = report["demo"][cls], report["stream"][cls]
        print(f"{cls}: demo mean expected level {demo['mean_expected']} (shots {demo['shot_expected']}), "
              f"pkdot stream mean {stream['mean_expected']}")
    print(f"wrote {shown(args.out)} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
