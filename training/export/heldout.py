"""Held-out check of exported models through the running service (python -m training.export.heldout MODELS_DIR).

Writes small synthetic BioVid and Aff-Wild2 sets with a seed that training does not use (so other subjects and
videos), starts `pkdot serve` on MODELS_DIR in a subprocess on a free loopback port, and measures what the models
answer there:

- pain: every clip as a REST video upload (/predict/pain), streamed frame by frame over /ws/stream?task=pain at the
  model's frame rate, and with its biosignal file through /predict/teacher/pain. Spearman's rank correlation between
  the expected level and the class, and ROC AUC of BL1 against PA4 from the expected level.
- affect: every video streamed over /ws/stream?task=affect at the model's frame rate, each answered frame paired with
  its annotation (CCC per dimension); the teacher through /predict/teacher/affect on targets every few streamed
  frames (the window of frames ending at the target, and one window of audio centred on it), beside the streamed
  student on the same targets.

    python -m training.export.heldout models --write-cards --out models/heldout.json

`--write-cards` adds (or replaces) the section "## Held-out check through the service" in each MODEL_CARD.md and
records the card's new sha256 in manifest.json, so that the folder still passes `verify_model_folder`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import ConfigError, PKDOTError

SEED = 7  # training uses seed 0; the synthetic subjects, faces and videos depend on the seed
SECTION = "## Held-out check through the service"
CARD = "MODEL_CARD.md"
STUDENTS = ("pain-student", "affect-student")
TEACHERS = ("pain-teacher", "affect-teacher")
AUDIO_RATE = 16000
IGNORE = -5.0  # Aff-Wild2's "no annotation" value


class HeldOutError(PKDOTError):
    """A models directory that cannot be checked (missing, empty or with a broken folder)."""


@dataclass(frozen=True)
class Sizes:
    subjects: int = 4
    samples_per_class: int = 2
    videos: int = 3
    seconds: float = 10.0
    teacher_every: int = 4  # affect teacher: one target every N streamed frames


# -- metrics -----------------------------------------------------------------------------------------------------------


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting one half."""
    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def pain_figures(levels: Sequence[float], classes: Sequence[int]) -> dict:
    from training.metrics import spearman

    lv, cl = np.asarray(levels, float), np.asarray(classes, int)
    keep = ~np.isnan(lv)
    lv, cl = lv[keep], cl[keep]
    ends = (cl == 0) | (cl == 4)
    return {"spearman": round(spearman(lv, cl), 4) if len(lv) > 1 else float("nan"),
            "auc_bl1_pa4": round(roc_auc(lv[ends], cl[ends] == 4), 4), "clips": int(len(lv)),
            "mean_level": {str(c): round(float(lv[cl == c].mean()), 4) for c in range(5) if (cl == c).any()}}


def affect_figures(predicted: np.ndarray, target: np.ndarray) -> dict:
    from training.metrics import ccc

    p, t = np.asarray(predicted, float).reshape(-1, 2), np.asarray(target, float).reshape(-1, 2)
    v, a = (ccc(p[:, i], t[:, i]) if len(p) > 1 else float("nan") for i in range(2))
    return {"ccc_valence": round(v, 4), "ccc_arousal": round(a, 4), "ccc_mean": round((v + a) / 2, 4),
            "frames": int(len(p))}


# -- data --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PainClip:
    subject: str
    name: str
    label: int
    video: Path
    signal: Path


@dataclass(frozen=True)
class AffectVideo:
    name: str
    video: Path
    targets: np.ndarray  # (frames, 2) valence, arousal; IGNORE where not annotated


def write_datasets(root: Path, sizes: Sizes, seed: int, progress: bool) -> tuple[list[PainClip], list[AffectVideo]]:
    from training.data.synth import write_affwild2, write_biovid

    biovid, affwild2 = root / "biovid", root / "affwild2"
    write_biovid(biovid, subjects=sizes.subjects, samples_per_class=sizes.samples_per_class, seed=seed,
                 progress=progress)
    write_affwild2(affwild2, videos=sizes.videos, seconds=sizes.seconds, seed=seed, two_person=False,
                   progress=progress)
    with open(biovid / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    clips = [PainClip(r["subject_name"], r["sample_name"], int(r["class_id"]),
                      biovid / "video" / r["subject_name"] / f"{r['sample_name']}.mp4",
                      biovid / "biosignals_filtered" / r["subject_name"] / f"{r['sample_name']}_bio.csv")
             for r in rows]
    annotations = {p.stem: p for p in (affwild2 / "annotations" / "VA_Estimation_Challenge").glob("*/*.txt")}
    videos = []
    for mp4 in sorted((affwild2 / "videos").glob("*/*.mp4")):
        if mp4.stem not in annotations:
            continue
        lines = annotations[mp4.stem].read_text().split()[1:]  # the header line is "valence,arousal"
        targets = np.array([[float(x) for x in line.split(",")] for line in lines], float)
        videos.append(AffectVideo(mp4.stem, mp4, targets))
    return clips, videos


def resampled(frames: Sequence[np.ndarray], fps: float, frame_rate: float) -> list[int]:
    """Indices of the frames kept when a video at `fps` is resampled to `frame_rate` (as the REST upload does)."""
    if fps <= frame_rate * 1.01:
        return list(range(len(frames)))
    step, next_t, kept = 1.0 / frame_rate, 0.0, []
    for i in range(len(frames)):
        if i / fps + 1e-6 < next_t:
            continue
        next_t += step
        kept.append(i)
    return kept


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def wav(samples: np.ndarray, rate: int = AUDIO_RATE) -> bytes:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def audio_window(audio: np.ndarray, centre_s: float, window_s: float, rate: int = AUDIO_RATE) -> np.ndarray:
    """`window_s` seconds of `audio` centred on `centre_s`, moved inside the recording when it is long enough."""
    n = int(round(window_s * rate))
    start = int(round(centre_s * rate)) - n // 2
    start = max(0, min(start, len(audio) - n))
    return audio[start:start + n]


# -- the service -------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(models_dir: Path, workdir: Path, timeout: float = 180.0) -> Iterator[str]:
    """`pkdot serve` (uvicorn) on MODELS_DIR on a free loopback port; yields its base URL once /readyz answers 200."""
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKDOT_")}
    root = str(Path(__file__).resolve().parents[2])
    env.update({"PYTHONPATH": os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")])),
                "PKDOT_HOST": "127.0.0.1", "PKDOT_PORT": str(port), "PKDOT_MODELS_DIR": str(models_dir),
                "PKDOT_PROVIDERS": "cpu", "PKDOT_DETECTOR_WORKERS": "1", "PKDOT_PREPROCESS_THREADS": "2",
                "PKDOT_INFERENCE_THREADS": "1", "PKDOT_ORT_INTRA_OP_THREADS": "1", "PKDOT_LOG_LEVEL": "warning"})
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pkdot", "serve"], cwd=workdir, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"pkdot serve exited with {proc.returncode}:\n"
                                       f"{log_path.read_text(errors='replace')[-3000:]}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pkdot serve was not ready within {timeout:g} s:\n"
                                       f"{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.25)
            yield url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def stream(ws_url: str, frames: Sequence[bytes]) -> list[dict]:
    """Send each JPEG over one WebSocket, one at a time (the next once the result came back); the results in order."""
    from websockets.sync.client import connect

    results = []
    with connect(ws_url, compression=None, max_size=1 << 22, open_timeout=30) as ws:
        for data in frames:
            ws.send(data)
            while True:
                message = json.loads(ws.recv(timeout=60))
                if message.get("type") in ("result", "error"):
                    break
            results.append(message)
    return results


def _post(client, path: str, files: list, label: str) -> dict:
    r = client.post(path, files=files)
    if r.status_code != 200:
        raise RuntimeError(f"{path} answered {r.status_code} for {label}: {r.text[:500]}")
    return r.json()


def _level(prediction: dict | None) -> float:
    return float(prediction["expected_level"]) if prediction else float("nan")


def _va(prediction: dict | None) -> list[float] | None:
    return [float(prediction["valence"]), float(prediction["arousal"])] if prediction else None


# -- the checks --------------------------------------------------------------------------------------------------------


def check_pain(client, ws_base: str, clips: Sequence[PainClip], manifests: dict, progress: bool) -> dict:
    from tqdm import tqdm

    from pkdot_contract.preprocessing.media import read_video

    frame_rate = manifests["pain-student"]["preprocessing"]["frame_rate"]
    teacher = "pain-teacher" in manifests
    rest, ws_last, ws_smoothed, teach, teach_student = [], [], [], [], []
    for clip in tqdm(clips, desc="pain clips", unit="clip", disable=not progress):
        video = clip.video.read_bytes()
        mp4 = ("file", (clip.video.name, video, "video/mp4"))
        rest.append(_level(_post(client, "/predict/pain", [mp4], clip.name)["prediction"]))
        frames, fps = read_video(video)
        results = stream(f"{ws_base}/ws/stream?task=pain",
                         [jpeg(frames[i]) for i in resampled(frames, fps, frame_rate)])
        answered = [r for r in results if r.get("type") == "result" and r.get("prediction")]
        ws_last.append(_level(answered[-1]["prediction"]) if answered else float("nan"))
        ws_smoothed.append(_level(answered[-1]["smoothed"]) if answered else float("nan"))
        if teacher:
            sig = ("signal", (clip.signal.name, clip.signal.read_bytes(), "text/csv"))
            body = _post(client, "/predict/teacher/pain", [mp4, sig], clip.name)
            teach.append(_level((body["teacher"] or {}).get("prediction")))
            teach_student.append(_level((body["student"] or {}).get("prediction")))
    labels = [c.label for c in clips]
    out = {"student_rest": pain_figures(rest, labels), "student_ws": pain_figures(ws_last, labels),
           "student_ws_smoothed": pain_figures(ws_smoothed, labels),
           "subjects": len({c.subject for c in clips}), "clips": len(clips), "stream_frame_rate": frame_rate}
    if teacher:
        out["teacher"] = pain_figures(teach, labels)
        out["teacher_request_student"] = pain_figures(teach_student, labels)
    return out


def check_affect(client, ws_base: str, videos: Sequence[AffectVideo], manifests: dict, every: int,
                 progress: bool) -> dict:
    from tqdm import tqdm

    from pkdot_contract.preprocessing.media import decode_audio, read_video

    pre = manifests["affect-student"]["preprocessing"]
    frame_rate, window = pre["frame_rate"], pre["window"]
    teacher = manifests.get("affect-teacher")
    window_s = teacher["preprocessing"]["privileged"]["window_s"] if teacher else 1.0
    pred, target = [], []  # streamed student, every answered annotated frame
    t_pred, t_student, t_target = [], [], []  # teacher targets: teacher, streamed student at that frame, label
    frames_sent = 0
    bar = tqdm(total=len(videos), desc="affect videos", unit="video", disable=not progress)
    for v in videos:
        data = v.video.read_bytes()
        frames, fps = read_video(data)
        kept = resampled(frames, fps, frame_rate)
        encoded = [jpeg(frames[i]) for i in kept]
        results = stream(f"{ws_base}/ws/stream?task=affect", encoded)
        frames_sent += len(encoded)
        answers: dict[int, list[float]] = {}
        for k, r in zip(kept, results, strict=True):
            va = _va(r.get("prediction")) if r.get("type") == "result" else None
            if va is None or k >= len(v.targets) or (v.targets[k] == IGNORE).any():
                continue
            answers[k] = va
            pred.append(va)
            target.append(v.targets[k])
        if teacher:
            audio = decode_audio(data, AUDIO_RATE)
            for j in range(window - 1, len(kept), every):
                k = kept[j]
                if k not in answers:
                    continue
                files = [("file", (f"{i}.jpg", encoded[i], "image/jpeg")) for i in range(j - window + 1, j + 1)]
                clip = audio_window(audio, k / fps, window_s)
                files.append(("signal", (f"{v.name}.wav", wav(clip), "audio/wav")))
                body = _post(client, "/predict/teacher/affect", files, f"{v.name} frame {k}")
                va = _va((body["teacher"] or {}).get("prediction"))
                if va is None:
                    continue
                t_pred.append(va)
                t_student.append(answers[k])
                t_target.append(v.targets[k])
        bar.update()
    bar.close()
    out = {"student_ws": affect_figures(np.array(pred), np.array(target)), "videos": len(videos),
           "frames_sent": frames_sent, "stream_frame_rate": frame_rate}
    if teacher:
        out["teacher"] = affect_figures(np.array(t_pred), np.array(t_target))
        out["student_ws_on_teacher_targets"] = affect_figures(np.array(t_student), np.array(t_target))
        out["teacher_every_frames"] = every
    return out


def check_models_dir(models_dir: Path) -> dict[str, Path]:
    """The model folders of MODELS_DIR by name, each verified; HeldOutError when one is missing or broken."""
    from pkdot_contract.manifest import ModelFolderError
    from training.export.folder import verify_model_folder

    if not models_dir.is_dir():
        raise HeldOutError(f"{models_dir} is not a directory")
    folders = {p.parent.name: p.parent for p in sorted(models_dir.glob("*/manifest.json"))}
    missing = [name for name in STUDENTS if name not in folders]
    if missing:
        raise HeldOutError(f"{models_dir} has no {', '.join(missing)} folder (with manifest.json); found "
                           f"{', '.join(folders) or 'none'}")
    for name in (*STUDENTS, *TEACHERS):
        if name in folders:
            try:
                verify_model_folder(folders[name])
            except ModelFolderError as exc:
                raise HeldOutError(str(exc)) from None
    return {n: p for n, p in folders.items() if n in (*STUDENTS, *TEACHERS)}


def machine() -> dict:
    import onnxruntime

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "providers": "CPU"}


def evaluate(models_dir: str | os.PathLike, sizes: Sizes = Sizes(), seed: int = SEED, progress: bool = True) -> dict:
    """Every figure of the held-out check, as a JSON-ready dict."""
    import httpx

    models_dir = Path(models_dir).resolve()
    folders = check_models_dir(models_dir)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pkdot-heldout-") as tmp:
        root = Path(tmp)
        clips, videos = write_datasets(root / "data", sizes, seed, progress)
        (root / "server").mkdir()
        with serve(models_dir, root / "server") as url, httpx.Client(base_url=url, timeout=120) as client:
            listed = client.get("/v1/models").json()["models"]
            manifests = {m["name"]: m["manifest"] for m in listed if m["name"] in folders}
            versions = {name: m["version"] for name, m in manifests.items()}
            ws_base = url.replace("http://", "ws://")
            pain = check_pain(client, ws_base, clips, manifests, progress)
            affect = check_affect(client, ws_base, videos, manifests, sizes.teacher_every, progress)
    return {"dataset": {"generator": "pkdot synth", "seed": seed, "biovid": {
                "subjects": sizes.subjects, "samples_per_class": sizes.samples_per_class, "clips": len(clips)},
                "affwild2": {"videos": len(videos), "seconds": sizes.seconds, "two_person": False}},
            "models": versions, "pain": pain, "affect": affect, "machine": machine(),
            "seconds": round(time.perf_counter() - start, 1)}


# -- model cards -------------------------------------------------------------------------------------------------------


def _f(x: float) -> str:
    return "—" if x != x else f"{x:.3f}"  # NaN as a dash


def card_section(name: str, figures: dict) -> str | None:
    """The card section of model `name`, or None when the check measured nothing for it."""
    d, pain, affect = figures["dataset"], figures["pain"], figures["affect"]
    bv, aw = d["biovid"], d["affwild2"]
    intro = [SECTION, "",
             f"Measured by `python -m training.export.heldout` through the running service (`pkdot serve`, ONNX "
             f"Runtime on {figures['machine']['providers']}), on synthetic data written with seed {d['seed']}, "
             "which training did not use (other subjects, faces and voices)."]
    if name.startswith("pain-"):
        intro += ["", f"BioVid layout: {bv['subjects']} subjects × 5 classes × {bv['samples_per_class']} = "
                      f"{bv['clips']} clips of 5.5 s. Spearman: rank correlation of the expected level with the "
                      "class; AUC: BL1 against PA4, from the expected level.", "",
                  "| path | Spearman | AUC BL1 vs PA4 | clips |", "|---|---|---|---|"]
        rows = [("student, `POST /predict/pain` (video upload)", pain["student_rest"]),
                (f"student, `/ws/stream?task=pain` ({pain['stream_frame_rate']:.2f} fps, last window)",
                 pain["student_ws"])]
        if "teacher" in pain:
            rows.append(("teacher, `POST /predict/teacher/pain` (video + biosignals)", pain["teacher"]))
        elif name == "pain-teacher":
            return None
        return "\n".join(intro + [f"| {label} | {_f(r['spearman'])} | {_f(r['auc_bl1_pa4'])} | {r['clips']} |"
                                  for label, r in rows]) + "\n"
    intro += ["", f"Aff-Wild2 layout: {aw['videos']} videos of {aw['seconds']:g} s, one person each. CCC: Lin's "
                  "concordance correlation with the per-frame annotation.", "",
              "| path | targets | CCC valence | CCC arousal | CCC mean | frames |", "|---|---|---|---|---|---|"]
    rows = [(f"student, `/ws/stream?task=affect` ({affect['stream_frame_rate']:g} fps)", "every answered frame",
             affect["student_ws"])]
    if "teacher" in affect:
        every = f"every {affect['teacher_every_frames']}th streamed frame"
        rows += [("student, `/ws/stream?task=affect`", every, affect["student_ws_on_teacher_targets"]),
                 ("teacher, `POST /predict/teacher/affect` (frames + 1 s of audio)", every, affect["teacher"])]
    elif name == "affect-teacher":
        return None
    return "\n".join(intro + [f"| {label} | {t} | {_f(r['ccc_valence'])} | {_f(r['ccc_arousal'])} | "
                              f"{_f(r['ccc_mean'])} | {r['frames']} |" for label, t, r in rows]) + "\n"


def replace_section(card: str, section: str) -> str:
    """`card` with its held-out section replaced by `section` (placed before "## Intended use" when new)."""
    lines = card.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == SECTION]
    if starts:
        i = starts[0]
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        return "".join(lines[:i]) + section + ("\n" if j < len(lines) else "") + "".join(lines[j:])
    anchor = next((k for k, line in enumerate(lines) if line.rstrip() == "## Intended use"), None)
    if anchor is None:
        return card.rstrip("\n") + "\n\n" + section
    return "".join(lines[:anchor]) + section + "\n" + "".join(lines[anchor:])


def write_cards(models_dir: Path, figures: dict) -> list[str]:
    """Update each model's card and its sha256 in manifest.json; the names of the folders written."""
    from pkdot_contract.manifest import load_manifest, sha256_file
    from training.export.folder import verify_model_folder

    written = []
    for name, folder in check_models_dir(models_dir).items():
        section = card_section(name, figures)
        if section is None:
            continue
        manifest = load_manifest(folder)
        card = folder / CARD
        card.write_text(replace_section(card.read_text(), section))
        manifest = manifest.model_copy(update={"files": {**manifest.files, CARD: sha256_file(card)}})
        (folder / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n")
        verify_model_folder(folder)
        written.append(name)
    return written


# -- command -----------------------------------------------------------------------------------------------------------


def summary(figures: dict) -> str:
    pain, affect = figures["pain"], figures["affect"]
    lines = [f"held-out synthetic data (seed {figures['dataset']['seed']}): {pain['clips']} pain clips, "
             f"{affect['videos']} affect videos; {figures['seconds']:g} s"]
    for key in ("student_rest", "student_ws", "teacher"):
        if key in pain:
            r = pain[key]
            lines.append(f"  pain {key:<14} spearman {_f(r['spearman'])}  auc(BL1 vs PA4) {_f(r['auc_bl1_pa4'])}")
    for key in ("student_ws", "student_ws_on_teacher_targets", "teacher"):
        if key in affect:
            r = affect[key]
            lines.append(f"  affect {key:<30} ccc v {_f(r['ccc_valence'])}  a {_f(r['ccc_arousal'])}  "
                         f"mean {_f(r['ccc_mean'])}  ({r['frames']} frames)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export.heldout", description=__doc__.split("\n\n")[0])
    p.add_argument("models_dir", metavar="MODELS_DIR", help="folder of exported models, e.g. models")
    p.add_argument("--write-cards", action="store_true", help="add the figures to each MODEL_CARD.md (and manifest)")
    p.add_argument("--out", metavar="FILE.json", help="write every figure to this JSON file")
    p.add_argument("--seed", type=int, default=SEED, help=f"seed of the held-out synthetic data (default {SEED})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    models_dir = Path(args.models_dir)
    try:
        figures = evaluate(models_dir, seed=args.seed, progress=not args.no_progress)
    except (HeldOutError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary(figures))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.out}")
    if args.write_cards:
        print(f"model cards updated: {', '.join(write_cards(models_dir, figures))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
