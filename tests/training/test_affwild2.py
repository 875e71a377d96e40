"""Aff-Wild2 reader and dataset, on a tiny dataset written here in the release layout."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import training.data.affwild2 as affwild2
from pkdot_contract.preprocessing.audio import hz_to_mel, mel_to_hz
from pkdot_contract.preprocessing.crop import CropSpec
from pkdot_contract.preprocessing.media import VideoInfo
from training.data.affwild2 import (
    AffWild2Dataset,
    AffWild2Entry,
    aligned_frames,
    audio_cache_path,
    cache_audio,
    count_video_frames,
    index_affwild2,
    read_va_annotation,
    video_name_for,
)
from training.data.cache import CropCache
from training.errors import ConfigError, DatasetError

FRAMES = 40  # every test video: 40 frames at 25 fps, 1.6 s
FPS = 25
SIZE = 16
SPEC = CropSpec(size=SIZE)
TONE_A, TONE_B = 440.0, 2000.0  # vidA's audio, vidB's audio
ANN = Path("annotations") / "VA_Estimation_Challenge"


def write_video(path: Path, tone_hz: float | None, codec: str = "libx264", audio_codec: str = "aac") -> None:
    """FRAMES frames of 32x32 at 25 fps and (unless tone_hz is None) a mono sine of tone_hz at 16 kHz."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 16000
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=FPS)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = None
        if tone_hz is not None:
            a = out.add_stream(audio_codec, rate=rate)
            a.layout = "mono"
        for i in range(FRAMES):
            out.mux(v.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 6 * i, np.uint8), format="rgb24")))
        out.mux(v.encode())
        if a is not None:
            n = FRAMES * rate // FPS
            wave = (0.5 * np.sin(2 * np.pi * tone_hz * np.arange(n) / rate)).astype(np.float32)[None]  # (1, n)
            fmt = "s16" if audio_codec.startswith("pcm") else "fltp"
            data = (wave * 32767).astype(np.int16) if fmt == "s16" else wave
            for s in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, s : s + 1024]), format=fmt,
                                                   layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, s, Fraction(1, rate)
                out.mux(a.encode(frame))
            out.mux(a.encode())


def ann_text(rows: list[tuple[float, float]]) -> str:
    return "valence,arousal\n" + "".join(f"{v:g},{a:g}\n" for v, a in rows)


def vid_a_rows() -> list[tuple[float, float]]:
    """valence i/100, arousal -i/100; frames 5 and 6 ignored (-5,-5), frame 7 ignored by its arousal only."""
    rows = [(i / 100, -i / 100) for i in range(FRAMES)]
    rows[5] = rows[6] = (-5, -5)
    rows[7] = (0.3, -5)
    return rows


def write_cache_entry(cache: CropCache, key: str, frames: np.ndarray, offset: int = 0, has_face: bool = True) -> None:
    """Crops whose pixel value is frame index + offset, so a model input tells which frame it came from."""
    n = len(frames)
    crops = np.broadcast_to(((frames + offset) % 256).astype(np.uint8)[:, None, None, None], (n, SIZE, SIZE, 3))
    cache.write(key, crops.copy(), frames, np.zeros((n, 4)), np.ones(n), np.full(n, has_face), 0.0)


def frame_ids(video: torch.Tensor) -> list[int]:
    v = video[:, 0, 0, 0].numpy() * SPEC.std[0] + SPEC.mean[0]
    return np.rint(v * 255).astype(int).tolist()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """vidA (mp4/AAC, Train_Set, crops missing for frames 10-12) and vidB (avi/PCM, Validation_Set, annotated as
    vidB_left and vidB_right, the right one a line longer than the video) plus a crop cache."""
    base = tmp_path_factory.mktemp("affwild2")
    root = base / "aff"
    write_video(root / "videos" / "batch1" / "vidA.mp4", TONE_A)
    write_video(root / "videos" / "batch2" / "new" / "vidB.avi", TONE_B, codec="mpeg4", audio_codec="pcm_s16le")
    (root / ANN / "Train_Set").mkdir(parents=True)
    (root / ANN / "Validation_Set").mkdir(parents=True)
    (root / ANN / "Train_Set" / "vidA.txt").write_text(ann_text(vid_a_rows()))
    (root / ANN / "Validation_Set" / "vidB_left.txt").write_text(ann_text([(0.5, i / 50 - 0.4) for i in range(40)]))
    (root / ANN / "Validation_Set" / "vidB_right.txt").write_text(ann_text([(-0.5, 0.1)] * 41))
    aligned = root / "cropped_aligned" / "vidA"
    aligned.mkdir(parents=True)
    for i in (1, 2, 4):
        cv2.imwrite(str(aligned / f"{i:05d}.jpg"), np.full((8, 8, 3), 9 * i, np.uint8))
    (aligned / "notes.txt").write_text("not a frame")
    cache = CropCache(base / "cache")
    cache.write_meta({"dataset": "affwild2", "crop": SPEC.to_dict()})
    write_cache_entry(cache, "vidA", np.array([i for i in range(FRAMES) if i not in (10, 11, 12)]))
    write_cache_entry(cache, "vidB_left", np.arange(FRAMES))
    write_cache_entry(cache, "vidB_right", np.arange(FRAMES), offset=100)
    return base


@pytest.fixture
def aff(template, tmp_path) -> tuple[Path, Path]:
    shutil.copytree(template, tmp_path / "copy")
    return tmp_path / "copy" / "aff", tmp_path / "copy" / "cache"


# -- annotations -----------------------------------------------------------------------------------------------------


def test_read_va_annotation(aff):
    root, _ = aff
    values, valid = read_va_annotation(root / ANN / "Train_Set" / "vidA.txt")
    assert values.shape == (40, 2) and values.dtype == np.float32 and valid.shape == (40,)
    assert valid.tolist() == [i not in (5, 6, 7) for i in range(40)]
    np.testing.assert_allclose(values[12], [0.12, -0.12], atol=1e-6)
    assert np.all(values[5:8] == 0)


@pytest.mark.parametrize(("text", "problem"), [
    ("", "first line must be 'valence,arousal'"),
    ("arousal,valence\n0.1,0.2\n", "first line must be 'valence,arousal', not 'arousal,valence'"),
    ("0.1,0.2\n0.1,0.2\n", "first line must be"),
    ("valence,arousal\n", "no frame lines"),
    ("valence,arousal\n0.1,0.2\n0.1;0.2\n", "line 3: '0.1;0.2' is not 'valence,arousal' numbers"),
    ("valence,arousal\n0.1,0.2,0.3\n", "line 2: '0.1,0.2,0.3' is not"),
    ("valence,arousal\n0.1,abc\n", "line 2: '0.1,abc' is not"),
    ("valence,arousal\n0.1,0.2\n1.5,0.2\n", "line 3: '1.5,0.2' is outside [-1, 1]"),
    ("valence,arousal\n-4,0.2\n", "line 2: '-4,0.2' is outside [-1, 1] (and not the ignore marker -5)"),
    ("valence,arousal\nnan,0.2\n", "line 2: 'nan,0.2' is outside"),
])
def test_bad_annotation(tmp_path, text, problem):
    p = tmp_path / "vidX.txt"
    p.write_text(text)
    with pytest.raises(DatasetError) as err:
        read_va_annotation(p)
    assert str(p) in str(err.value) and problem in str(err.value)


def test_annotation_header_tolerates_spaces_and_crlf(tmp_path):
    p = tmp_path / "v.txt"
    p.write_bytes(b"Valence, Arousal\r\n0.25,-0.5\r\n-5,0.1\r\n\r\n")
    values, valid = read_va_annotation(p)
    assert values.tolist() == [[0.25, -0.5], [0.0, 0.0]] and valid.tolist() == [True, False]


# -- index -----------------------------------------------------------------------------------------------------------


def test_index_entries(aff):
    root, _ = aff
    entries = index_affwild2(root)
    assert [e.name for e in entries] == ["vidA", "vidB_left", "vidB_right"]
    a, left, right = entries
    assert a == AffWild2Entry("vidA", "Train_Set", root / ANN / "Train_Set" / "vidA.txt", "vidA",
                              root / "videos" / "batch1" / "vidA.mp4", root / "cropped_aligned" / "vidA")
    assert left.video_name == right.video_name == "vidB" and left.set_name == "Validation_Set"
    assert left.video_path == right.video_path == root / "videos" / "batch2" / "new" / "vidB.avi"
    assert left.aligned_dir is None and left.subject == "vidB_left" != right.subject
    assert [e.name for e in index_affwild2(root, "train")] == ["vidA"]
    assert [e.name for e in index_affwild2(root, ["Validation_Set"])] == ["vidB_left", "vidB_right"]
    with pytest.raises(ConfigError, match="unknown Aff-Wild2 set 'test'"):
        index_affwild2(root, "test")


def test_video_name_for():
    videos = {"vidB", "a_left"}
    assert video_name_for("vidB_left", videos) == "vidB" and video_name_for("vidB_right", videos) == "vidB"
    assert video_name_for("vidB", videos) == "vidB" and video_name_for("a_left", videos) == "a_left"
    assert video_name_for("vidC_left", videos) is None and video_name_for("vidB_up", videos) is None


def test_aligned_frames_are_one_based(aff):
    root, _ = aff
    frames = aligned_frames(root / "cropped_aligned" / "vidA")
    assert frames == {0: root / "cropped_aligned" / "vidA" / "00001.jpg",
                      1: root / "cropped_aligned" / "vidA" / "00002.jpg",
                      3: root / "cropped_aligned" / "vidA" / "00004.jpg"}


def test_not_an_affwild2_root(tmp_path):
    with pytest.raises(DatasetError, match=r"is not an Aff-Wild2 root: expected annotations.VA_Estimation_Challenge"):
        index_affwild2(tmp_path)
    (tmp_path / ANN).mkdir(parents=True)
    with pytest.raises(DatasetError, match="none of the folders Train_Set, Validation_Set"):
        index_affwild2(tmp_path)


def test_index_missing_video_skip_or_strict(aff, caplog):
    root, _ = aff
    (root / ANN / "Train_Set" / "vidC.txt").write_text(ann_text([(0.0, 0.0)] * 40))
    assert [e.name for e in index_affwild2(root)] == ["vidA", "vidB_left", "vidB_right"]
    assert "vidC" in caplog.text
    with pytest.raises(DatasetError, match=r"vidC.txt: no video vidC.mp4/.avi"):
        index_affwild2(root, strict=True)


def test_index_ambiguous_names(aff):
    root, _ = aff
    shutil.copy(root / ANN / "Train_Set" / "vidA.txt", root / ANN / "Validation_Set" / "vidA.txt")
    with pytest.raises(DatasetError, match="annotation 'vidA' is in both"):
        index_affwild2(root)
    (root / ANN / "Validation_Set" / "vidA.txt").unlink()
    shutil.copy(root / "videos" / "batch1" / "vidA.mp4", root / "videos" / "vidA.avi")
    with pytest.raises(DatasetError, match="two videos named 'vidA'"):
        index_affwild2(root)


def test_count_frames_falls_back_to_packets(aff, monkeypatch):
    root, _ = aff
    path = root / "videos" / "batch1" / "vidA.mp4"
    assert count_video_frames(path) == (40, 25.0, True)
    monkeypatch.setattr(affwild2, "video_info", lambda p: VideoInfo(25.0, 0, 32, 32, True))
    assert count_video_frames(path) == (40, 25.0, True)


# -- dataset ---------------------------------------------------------------------------------------------------------


def test_dataset_items(aff):
    root, cache = aff
    ds = AffWild2Dataset(root, cache, num_frames=4)
    # vidA: 40 frames, labels ignored at 5-7, no crop at 10-12
    assert len(ds) == 34 and ds.skipped == [] and [e.name for e in ds.entries] == ["vidA"]
    assert [ds.locate(i)[1] for i in range(8)] == [0, 1, 2, 3, 4, 8, 9, 13]
    item = ds[7]
    assert set(item) == {"video", "audio", "va", "va_seq", "mask", "subject", "key", "frame"}
    assert item["video"].shape == (4, 3, SIZE, SIZE) and item["video"].dtype == torch.float32
    assert item["audio"].shape == (1, 64, 101) and item["audio"].dtype == torch.float32
    assert item["va"].dtype == torch.float32 and item["va"].tolist() == pytest.approx([0.13, -0.13])
    assert item["va_seq"].shape == (4, 2) and item["mask"].dtype == torch.bool
    assert item["subject"] == item["key"] == "vidA" and item["frame"] == 13
    # clip 10..13: frames 10-12 have no crop and show frame 9's; their labels are valid
    assert frame_ids(item["video"]) == [9, 9, 9, 13] and item["mask"].tolist() == [True] * 4
    np.testing.assert_allclose(item["va_seq"][:, 0].numpy(), [0.10, 0.11, 0.12, 0.13], atol=1e-6)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert batch["video"].shape == (5, 4, 3, SIZE, SIZE) and batch["audio"].shape == (5, 1, 64, 101)
    assert batch["frame"].tolist() == [0, 1, 2, 3, 4]


def test_clip_start_and_ignored_frames_are_masked(aff):
    root, cache = aff
    ds = AffWild2Dataset(root, cache, num_frames=4, stride=2, with_audio=False)
    first = ds[0]  # target 0: frames -6, -4, -2 do not exist
    assert first["frame"] == 0 and "audio" not in first
    assert frame_ids(first["video"]) == [0, 0, 0, 0] and first["mask"].tolist() == [False, False, False, True]
    assert first["va_seq"].tolist() == [[0, 0], [0, 0], [0, 0], [0, 0]]
    i = [ds.locate(k)[1] for k in range(len(ds))].index(9)
    item = ds[i]  # frames 3, 5, 7, 9: 5 and 7 are -5
    assert frame_ids(item["video"]) == [3, 5, 7, 9] and item["mask"].tolist() == [True, False, False, True]
    np.testing.assert_allclose(item["va_seq"].numpy(), [[0.03, -0.03], [0, 0], [0, 0], [0.09, -0.09]], atol=1e-6)


def _mel_peak_hz(audio: torch.Tensor) -> float:
    """Frequency (Hz) of the centre of the mel filter with the most energy, median over frames."""
    peak = int(np.median(audio[0].numpy().argmax(axis=0)))
    return float(mel_to_hz(np.linspace(0, hz_to_mel(8000), 66))[peak + 1])


def test_left_and_right_take_the_audio_of_their_video_decoded_once(aff, monkeypatch):
    root, cache = aff
    calls = []
    real = affwild2.decode_audio

    def counting(path, sample_rate=16000):
        calls.append(Path(path).name)
        return real(path, sample_rate)

    monkeypatch.setattr(affwild2, "decode_audio", counting)
    ds = AffWild2Dataset(root, cache, sets="both", num_frames=2, target_stride=10)
    by_key = {}
    for i in range(len(ds)):
        item = ds[i]
        by_key.setdefault(item["key"], []).append(item)
    assert sorted(by_key) == ["vidA", "vidB_left", "vidB_right"]
    assert sorted(calls) == ["vidA.mp4", "vidB.avi"]  # once per video, shared by _left and _right
    assert abs(_mel_peak_hz(by_key["vidA"][1]["audio"]) - TONE_A) < 60
    assert abs(_mel_peak_hz(by_key["vidB_left"][1]["audio"]) - TONE_B) < 150
    assert torch.equal(by_key["vidB_left"][1]["audio"], by_key["vidB_right"][1]["audio"])
    assert frame_ids(by_key["vidB_right"][1]["video"]) == [109, 110]  # vidB_right's own crops
    assert by_key["vidB_right"][0]["va"].tolist() == pytest.approx([-0.5, 0.1])
    assert {it["subject"] for its in by_key.values() for it in its} == {"vidA", "vidB_left", "vidB_right"}


def test_audio_window_at_the_edge_is_padded(aff):
    root, cache = aff
    ds = AffWild2Dataset(root, cache, num_frames=1)
    first = ds[0]["audio"][0].numpy()  # target frame 0: the first half second is before the recording
    assert np.allclose(first[:, :45], np.log(1e-6)) and first[:, 60:].max() > 0


def test_audio_cache_is_bounded_on_request(aff):
    root, cache = aff
    ds = AffWild2Dataset(root, cache, sets="both", num_frames=1, audio_cache_videos=1)
    for i in range(len(ds)):
        ds[i]
    assert len(ds._audio) == 1


def test_audio_stored_in_the_cache_is_memory_mapped(aff, monkeypatch):
    root, cache_dir = aff
    cache = CropCache(cache_dir)
    decoded = AffWild2Dataset(root, cache, sets="both", num_frames=1, target_stride=7)
    expected = [decoded[i]["audio"] for i in range(len(decoded))]
    entries = index_affwild2(root)
    assert cache_audio(entries, cache) == {}
    stored = sorted(p.relative_to(cache_dir).as_posix() for p in (cache_dir / "audio").rglob("*.npy"))
    assert stored == ["audio/16000/vidA.npy", "audio/16000/vidB.npy"]
    assert audio_cache_path(cache, "vidB") == cache_dir / "audio" / "16000" / "vidB.npy"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the audio is cached")

    monkeypatch.setattr(affwild2, "decode_audio", no_decoding)
    assert cache_audio(entries, cache) == {}  # resumable: nothing to redo
    ds = AffWild2Dataset(root, cache, sets="both", num_frames=1, target_stride=7)
    assert all(torch.equal(ds[i]["audio"], expected[i]) for i in range(len(ds)))
    assert isinstance(ds._audio["vidB"], np.memmap)
    audio_cache_path(cache, "vidA").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"vidA.npy: audio unreadable"):
        AffWild2Dataset(root, cache, sets="train")[0]


def test_cache_audio_reports_silent_videos(aff):
    root, cache_dir = aff
    video = root / "videos" / "batch1" / "vidA.mp4"
    write_video(video, tone_hz=None)
    problems = cache_audio(index_affwild2(root), CropCache(cache_dir))
    assert list(problems) == [str(video)] and "no audio stream" in problems[str(video)]
    with pytest.raises(DatasetError, match="vidA.mp4: audio unreadable"):
        cache_audio(index_affwild2(root), CropCache(cache_dir), strict=True)


def test_sets_strides_and_entries(aff):
    root, cache = aff
    assert len(AffWild2Dataset(root, cache, sets="val")) == 80  # vidB_left 40 + vidB_right min(41, 40)
    assert len(AffWild2Dataset(root, cache, sets="both")) == 34 + 80
    assert len(AffWild2Dataset(root, cache, target_stride=2)) == 17
    entries = index_affwild2(root)
    assert len(AffWild2Dataset(root, cache, entries[1:2])) == 40
    assert len(AffWild2Dataset(root, cache, ["vidB_right", "vidA"])) == 74
    with pytest.raises(DatasetError, match="no annotation named 'vidZ'"):
        AffWild2Dataset(root, cache, ["vidZ"])
    with pytest.raises(ConfigError):
        AffWild2Dataset(root, cache, num_frames=0)
    with pytest.raises(DatasetError, match="cache of 'biovid', not of Aff-Wild2"):
        other = CropCache(root.parent / "other")
        other.write_meta({"dataset": "biovid", "crop": SPEC.to_dict()})
        AffWild2Dataset(root, other)


# -- broken samples: skip (counted) or strict (DatasetError naming the file) ----------------------------------------


def _break(root: Path, cache: Path, how: str) -> tuple[str, Path, str]:
    """Break vidB_right one way; returns the skip reason, the file the message names, and a phrase of it."""
    ann = root / ANN / "Validation_Set" / "vidB_right.txt"
    video = root / "videos" / "batch2" / "new" / "vidB.avi"
    if how == "annotation too long":
        ann.write_text(ann_text([(0.1, 0.1)] * 46))
        return "length mismatch", ann, "46 annotated frames but the video"
    if how == "annotation too short":
        ann.write_text(ann_text([(0.1, 0.1)] * 20))
        return "length mismatch", ann, "at most 5 apart"
    if how == "bad annotation":
        ann.write_text("valence,arousal\n0.1,7\n")
        return "annotation invalid", ann, "outside [-1, 1]"
    if how == "not in cache":
        (cache / "crops" / "vidB_right.meta.npz").unlink()
        return how, video, "pkdot prepare"
    if how == "no face":
        write_cache_entry(CropCache(cache), "vidB_right", np.arange(FRAMES), has_face=False)
        return how, video, "no face was found"
    if how == "all ignored":
        ann.write_text(ann_text([(-5, -5)] * 40))
        return "no valid label", ann, "no frame with a valid label"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["annotation too long", "annotation too short", "bad annotation", "not in cache",
                                 "no face", "all ignored"])
def test_broken_entry_skipped_or_strict(aff, how):
    root, cache = aff
    reason, named, phrase = _break(root, cache, how)
    ds = AffWild2Dataset(root, cache, sets="val")
    assert [e.name for e in ds.entries] == ["vidB_left"] and len(ds) == 40
    assert ds.skip_counts == {reason: 1} and ds.skipped[0].key == "vidB_right"
    assert str(named) in ds.skipped[0].detail and phrase in ds.skipped[0].detail
    with pytest.raises(DatasetError) as err:
        AffWild2Dataset(root, cache, sets="val", strict=True)
    assert str(named) in str(err.value) and phrase in str(err.value)


def test_length_tolerance_is_configurable(aff):
    root, cache = aff
    assert len(AffWild2Dataset(root, cache, sets="val", frame_tolerance=0).entries) == 1  # vidB_right: 41 vs 40
    _break(root, cache, "annotation too long")
    assert len(AffWild2Dataset(root, cache, sets="val", frame_tolerance=6).entries) == 2


def test_unreadable_missing_or_silent_video(aff):
    root, cache = aff
    video_a = root / "videos" / "batch1" / "vidA.mp4"
    video_a.write_bytes(b"\x00\x00\x00 not an mp4")
    ds = AffWild2Dataset(root, cache, sets="both")
    assert ds.skip_counts == {"video unreadable": 1} and str(video_a) in ds.skipped[0].detail
    with pytest.raises(DatasetError, match="vidA.mp4"):
        AffWild2Dataset(root, cache, sets="both", strict=True)
    write_video(video_a, tone_hz=None)  # a video without sound
    ds = AffWild2Dataset(root, cache, sets="both")
    assert ds.skip_counts == {"no audio": 1} and "no audio stream" in ds.skipped[0].detail
    assert len(AffWild2Dataset(root, cache, with_audio=False)) == 34  # fine for a student without audio
    video_a.unlink()
    ds = AffWild2Dataset(root, cache, sets="both")
    assert ds.skip_counts == {"video missing": 1} and "vidA.txt" in ds.skipped[0].detail
    assert len(AffWild2Dataset(root, cache, ["vidA", "vidB_left"]).skipped) == 1
    with pytest.raises(DatasetError, match=r"no usable Aff-Wild2 sample .*'video missing': 1"):
        AffWild2Dataset(root, cache, sets="train")


# -- the synthetic generator writes what this reader reads ----------------------------------------------------------


@pytest.mark.slow
def test_reads_a_synthetic_affwild2(tmp_path):
    synth = pytest.importorskip("training.data.synth")
    root = tmp_path / "synth"
    synth.write_affwild2(root, videos=2, seconds=1.0, seed=5, size=(160, 160), cropped_aligned=True)
    entries = index_affwild2(root, strict=True)
    pair = [e for e in entries if e.name.endswith(("_left", "_right"))]
    assert len(entries) == 3 and len(pair) == 2 and pair[0].video_path == pair[1].video_path
    assert {e.set_name for e in entries} == {"Train_Set", "Validation_Set"}
    cache = CropCache(tmp_path / "cache")  # the aligned crops stand in for `pkdot prepare`
    cache.write_meta({"dataset": "affwild2", "crop": SPEC.to_dict()})
    for e in entries:
        frames = aligned_frames(e.aligned_dir)
        assert e.aligned_dir.name == e.name and sorted(frames) == list(range(30))
        crops = np.stack([cv2.resize(cv2.imread(str(p))[..., ::-1], (SIZE, SIZE)) for p in frames.values()])
        n = len(crops)
        cache.write(e.name, crops, np.array(list(frames)), np.zeros((n, 4)), np.ones(n), np.ones(n, bool), 0.0)
        values, valid = read_va_annotation(e.annotation_path)
        assert len(values) == count_video_frames(e.video_path)[0] == 30 and 0 < valid.sum() < 30
    ds = AffWild2Dataset(root, cache, sets="both", num_frames=4, strict=True)
    assert ds.skipped == [] and len(ds) == sum(int(read_va_annotation(e.annotation_path).valid.sum())
                                               for e in entries)
    item = ds[len(ds) - 1]
    assert item["audio"].shape == (1, 64, 101) and torch.isfinite(item["audio"]).all()
    assert item["audio"].max() > np.log(1e-6) + 1  # the synthetic voice is audible
    assert item["mask"][-1] and item["va"].abs().max() <= 1
