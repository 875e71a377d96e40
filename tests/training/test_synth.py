"""`pkdot synth`: the synthetic datasets have the exact release layouts, are reproducible, show detectable faces,
and their privileged modality carries the label."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import av
import numpy as np
import pytest

from pkdot.cli import main
from pkdot_contract.preprocessing.media import decode_audio, read_video
from training.data.synth import write_affwild2, write_biovid
from training.data.synth.biosignals import BIO_RATE
from training.data.synth.pain import CLASS_NAMES
from training.errors import ConfigError

SEED = 7
SIZE = (320, 240)
SAMPLES_HEADER = "subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name"
BIO_HEADER = "time\tgsr\tecg\temg_trapezius"


@pytest.fixture(scope="module")
def biovid(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("biovid")
    summary = write_biovid(root, subjects=2, samples_per_class=1, seed=SEED, size=SIZE)
    assert summary.items == 10 and summary.frames == 10 * 138 and summary.bytes > 0
    return root


@pytest.fixture(scope="module")
def affwild2(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("affwild2")
    summary = write_affwild2(root, videos=2, seconds=3.0, seed=SEED, size=SIZE, cropped_aligned=True)
    assert summary.videos == 2 and summary.items == 3  # the second video shows two people
    return root


def read_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "samples.csv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def video_codecs(path: Path) -> tuple[str, ...]:
    with av.open(str(path)) as container:
        return tuple(s.codec_context.name for s in container.streams)


# --- BioVid Part A -----------------------------------------------------------------------------------------------


def test_biovid_layout_is_the_release_layout(biovid: Path):
    assert sorted(p.name for p in biovid.iterdir()) == ["biosignals_filtered", "samples.csv",
                                                        "synthetic_subjects.csv", "video"]
    assert (biovid / "samples.csv").read_text().splitlines()[0] == SAMPLES_HEADER
    rows = read_rows(biovid)
    assert len(rows) == 10
    assert [int(r["sample_id"]) for r in rows] == list(range(10))
    assert sorted({r["subject_id"] for r in rows}) == ["0", "1"]
    videos, signals = set(), set()
    for r in rows:
        assert re.fullmatch(r"\d{6}_[mw]_\d{2}", r["subject_name"])
        assert r["class_name"] == CLASS_NAMES[int(r["class_id"])]
        assert re.fullmatch(rf"{r['subject_name']}-{r['class_name']}-\d{{3}}", r["sample_name"])
        videos.add(biovid / "video" / r["subject_name"] / f"{r['sample_name']}.mp4")
        signals.add(biovid / "biosignals_filtered" / r["subject_name"] / f"{r['sample_name']}_bio.csv")
    assert set((biovid / "video").rglob("*.*")) == videos  # nothing missing, nothing extra
    assert set((biovid / "biosignals_filtered").rglob("*.*")) == signals


def test_biovid_ground_truth_names_every_subject_and_a_third_are_stoic(biovid: Path, tmp_path: Path):
    from training.data.synth.biovid import plan_samples, read_subject_truth, write_subject_truth
    from training.data.synth.pain import EXPRESSIVENESS, STOIC_EXPRESSIVENESS

    truth = read_subject_truth(biovid)
    assert set(truth) == {r["subject_name"] for r in read_rows(biovid)}
    write_subject_truth(tmp_path, plan_samples(12, 1, SEED), SEED, SIZE)  # the constants only: no videos
    truth = read_subject_truth(tmp_path)
    assert sum(t["stoic"] for t in truth.values()) == 4  # every third subject
    for t in truth.values():
        low, high = STOIC_EXPRESSIVENESS if t["stoic"] else EXPRESSIVENESS
        assert low <= t["expressiveness"] <= high and 0.8 <= t["sensitivity"] <= 1.2
    assert read_subject_truth(tmp_path / "missing") is None


def test_biovid_biosignals_are_512_hz_in_microseconds_for_5_5_s(biovid: Path):
    path = next((biovid / "biosignals_filtered").rglob("*_bio.csv"))
    lines = path.read_text().splitlines()
    assert lines[0] == BIO_HEADER
    table = np.loadtxt(path, delimiter="\t", skiprows=1)
    assert table.shape == (2816, 4)
    time_us = table[:, 0]
    assert time_us[0] == 0 and set(np.diff(time_us)) <= {1953.0, 1954.0}
    assert (len(time_us) - 1) / (time_us[-1] * 1e-6) == pytest.approx(512.0, abs=0.01)
    assert len(time_us) / BIO_RATE == pytest.approx(5.5)
    assert re.fullmatch(r"\d+\t-?\d+\.\d{5}\t-?\d+\.\d{5}\t-?\d+\.\d{5}", lines[1])
    assert table[:, 1].min() > 0.5 and table[:, 1].max() < 30  # skin conductance in microsiemens


def test_biovid_videos_are_h264_25_fps_138_frames(biovid: Path):
    path = next((biovid / "video").rglob("*.mp4"))
    frames, fps = read_video(path)
    assert frames.shape == (138, SIZE[1], SIZE[0], 3) and fps == 25.0
    assert video_codecs(path) == ("h264",)


def test_biovid_faces_are_detected(biovid: Path, face_detector):
    paths = sorted((biovid / "video").rglob("*.mp4"))[::3]
    found = total = 0
    for path in paths:
        frames, _ = read_video(path)
        boxes = [face_detector.largest(f) for f in frames]
        found += sum(b is not None for b in boxes)
        total += len(boxes)
        widths = [b.w for b in boxes if b is not None]
        assert np.median(widths) >= 90  # big enough for 112x112 crops
    assert found / total >= 0.95


def test_biovid_is_reproducible_and_independent_of_workers_and_size_of_run(biovid: Path, tmp_path: Path):
    # one subject with two processes: the same files as subject 0 of the two-subject fixture, written in one
    again = write_biovid(tmp_path / "again", subjects=1, samples_per_class=1, seed=SEED, size=SIZE, workers=2).root
    rows = read_rows(again)
    assert rows == read_rows(biovid)[:5]
    for r in rows:
        rel = Path(r["subject_name"]) / f"{r['sample_name']}_bio.csv"
        assert (again / "biosignals_filtered" / rel).read_bytes() == (biovid / "biosignals_filtered" / rel).read_bytes()
    rel = Path(rows[-1]["subject_name"]) / f"{rows[-1]['sample_name']}.mp4"
    a, _ = read_video(again / "video" / rel)
    b, _ = read_video(biovid / "video" / rel)
    assert np.array_equal(a, b)
    other = write_biovid(tmp_path / "other", subjects=1, samples_per_class=1, seed=SEED + 1, size=SIZE).root
    assert read_rows(other) != rows


def test_biovid_written_biosignals_separate_baseline_from_pain(biovid: Path):
    amplitude = {c: [] for c in CLASS_NAMES}
    for r in read_rows(biovid):
        table = np.loadtxt(biovid / "biosignals_filtered" / r["subject_name"] / f"{r['sample_name']}_bio.csv",
                           skiprows=1)
        t, gsr = table[:, 0] * 1e-6, table[:, 1]
        amplitude[r["class_name"]].append(gsr[t > 1.0].max() - gsr[t < 1.0].mean())
    assert np.mean(amplitude["PA4"]) > np.mean(amplitude["PA2"]) > np.mean(amplitude["BL1"])


def test_biovid_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ConfigError, match="frame size"):
        write_biovid(tmp_path / "a", subjects=1, samples_per_class=1, size=(321, 240))
    with pytest.raises(ConfigError, match="seed"):
        write_biovid(tmp_path / "b", subjects=1, samples_per_class=1, seed=-1)
    with pytest.raises(ConfigError, match="at least one"):
        write_biovid(tmp_path / "c", subjects=0)


# --- Aff-Wild2 ---------------------------------------------------------------------------------------------------

ANN = Path("annotations") / "VA_Estimation_Challenge"


def test_affwild2_layout_is_the_release_layout(affwild2: Path):
    assert sorted(p.name for p in affwild2.iterdir()) == ["annotations", "cropped_aligned", "videos"]
    videos = sorted(affwild2.glob("videos/*/*.mp4"))
    assert len(videos) == 2
    train = sorted(p.stem for p in (affwild2 / ANN / "Train_Set").glob("*.txt"))
    val = sorted(p.stem for p in (affwild2 / ANN / "Validation_Set").glob("*.txt"))
    assert len(val) == 1 and len(train) == 2
    assert sorted(p.name for p in (affwild2 / ANN).iterdir()) == ["Train_Set", "Validation_Set"]
    two = next(p for p in videos if p.stem not in val)  # the side-by-side video is in the training set
    assert train == [f"{two.stem}_left", f"{two.stem}_right"]
    for p in videos:
        assert re.fullmatch(r"\d+-30-\d+x\d+|video\d+", p.stem)
    w, h = (int(v) for v in two.stem.rsplit("-", 1)[1].split("x"))
    assert (w, h) == (2 * SIZE[0], SIZE[1])  # the name carries the true frame size


def test_affwild2_annotations_have_one_line_per_frame(affwild2: Path):
    for ann in sorted((affwild2 / ANN).rglob("*.txt")):
        video = ann.stem.removesuffix("_left").removesuffix("_right")
        frames, fps = read_video(next(affwild2.glob(f"videos/*/{video}.mp4")))
        lines = ann.read_text().splitlines()
        assert fps == 30.0 and len(frames) == 90
        assert lines[0] == "valence,arousal"
        assert len(lines) == len(frames) + 1
        values = [line for line in lines[1:] if line != "-5,-5"]
        assert 0 < len(lines) - 1 - len(values) < 45  # a few frames to ignore, not most
        for line in values:
            assert re.fullmatch(r"-?[01]\.\d{3},-?[01]\.\d{3}", line), line
        va = np.array([[float(x) for x in line.split(",")] for line in values])
        assert np.all(np.abs(va) <= 1.0) and va.std(axis=0).min() > 0.0


def test_affwild2_videos_have_h264_and_aac_audio(affwild2: Path):
    for path in sorted(affwild2.glob("videos/*/*.mp4")):
        assert video_codecs(path) == ("h264", "aac")
        audio = decode_audio(path, 16_000)
        assert len(audio) == pytest.approx(3.0 * 16_000, rel=0.05)
        assert 0.003 < audio.std() < 0.5  # someone is speaking, nothing is clipped to silence


def test_affwild2_faces_are_detected_both_people_side_by_side(affwild2: Path, face_detector):
    for path in sorted(affwild2.glob("videos/*/*.mp4")):
        frames, _ = read_video(path)
        people = 2 if frames.shape[2] == 2 * SIZE[0] else 1
        found = [len(face_detector.detect(f)) >= people for f in frames[::2]]
        assert np.mean(found) >= 0.95, path.name


def test_affwild2_cropped_aligned_has_one_image_per_frame(affwild2: Path):
    import cv2

    tracks = sorted(p.stem for p in (affwild2 / ANN).rglob("*.txt"))
    assert sorted(p.name for p in (affwild2 / "cropped_aligned").iterdir()) == tracks
    for track in tracks:
        images = sorted((affwild2 / "cropped_aligned" / track).iterdir())
        assert [p.name for p in images] == [f"{i:05d}.jpg" for i in range(1, 91)]
        assert cv2.imread(str(images[0])).shape == (112, 112, 3)


def test_affwild2_is_reproducible(affwild2: Path, tmp_path: Path):
    again = write_affwild2(tmp_path, videos=2, seconds=3.0, seed=SEED, size=SIZE).root
    for ann in sorted((affwild2 / ANN).rglob("*.txt")):
        assert (again / ann.relative_to(affwild2)).read_bytes() == ann.read_bytes()
    for path in sorted(affwild2.glob("videos/*/*.mp4")):
        a, _ = read_video(again / path.relative_to(affwild2))
        b, _ = read_video(path)
        assert np.array_equal(a, b)
        assert np.array_equal(decode_audio(again / path.relative_to(affwild2)), decode_audio(path))


# --- command line ------------------------------------------------------------------------------------------------


def test_cli_writes_biovid_and_refuses_a_non_empty_folder(tmp_path: Path, capsys):
    out = tmp_path / "biovid"
    args = ["synth", "biovid", "--out", str(out), "--subjects", "1", "--samples-per-class", "1", "--size", "256x192",
            "--seed", "3", "--workers", "1", "--no-progress"]
    assert main(args) == 0
    assert "biovid: 1 subjects, 5 samples" in capsys.readouterr().out
    assert len(read_rows(out)) == 5

    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err

    (out / "notes.txt").write_text("mine")
    (out / "video" / "stale.mp4").write_bytes(b"")
    assert main([*args, "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # --force only replaces the layout's own entries
    assert not (out / "video" / "stale.mp4").exists()


def test_cli_rejects_options_of_the_other_dataset(tmp_path: Path, capsys):
    assert main(["synth", "biovid", "--out", str(tmp_path / "x"), "--videos", "3"]) == 2
    assert "--videos does not apply to biovid" in capsys.readouterr().err
    assert main(["synth", "affwild2", "--out", str(tmp_path / "y"), "--samples-per-class", "3"]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(SystemExit) as exc:
        main(["synth", "biovid", "--out", str(tmp_path / "z"), "--size", "big"])
    assert exc.value.code == 2
