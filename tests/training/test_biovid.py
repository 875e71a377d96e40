"""BioVid Part A reader and dataset, on a tiny dataset written here in the release layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pkdot_contract.preprocessing.crop import CropSpec
from training.data.biovid import BioVidDataset, BioVidSample, read_samples_csv, tsn_indices
from training.data.cache import CropCache
from training.errors import ConfigError, DatasetError

SUBJECTS = [(0, "071309_w_21"), (1, "072514_m_27"), (2, "080309_m_29")]
CLASSES = ["BL1", "PA1", "PA2", "PA3", "PA4"]
FPS = 25.0
N_FRAMES = 138  # 5.5 s at 25 fps
SIZE = 16
SPEC = CropSpec(size=SIZE)


def write_mp4(path: Path, frames: int = 4) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            img = np.full((32, 32, 3), 40 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())


def bio_text(n: int = 2816, columns=("time", "gsr", "ecg", "emg_trapezius"), seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = ["\t".join(columns)]
    for i in range(n):
        values = rng.standard_normal(len(columns) - 1)
        lines.append("\t".join([str(round(i * 1e6 / 512))] + [f"{v:.5f}" for v in values]))
    return "\n".join(lines) + "\n"


def crops_for(n: int) -> np.ndarray:
    """Crop k is filled with the value k, so a model input tells which crop it came from."""
    return np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, SIZE, SIZE, 3)).copy()


def frame_ids(video: torch.Tensor) -> list[int]:
    """Invert to_model_input's normalisation of channel 0: the crop numbers of a (T, 3, S, S) input."""
    v = video[:, 0, 0, 0].numpy() * SPEC.std[0] + SPEC.mean[0]
    return np.rint(v * 255).astype(int).tolist()


def write_cache(cache_dir: Path, keys, n: int = N_FRAMES, has_face: bool = True, dataset: str = "biovid") -> CropCache:
    cache = CropCache(cache_dir)
    cache.write_meta({"dataset": dataset, "crop": SPEC.to_dict()})
    for key in keys:
        cache.write(key, crops_for(n), np.arange(n), np.zeros((n, 4)), np.ones(n), np.full(n, has_face), FPS)
    return cache


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_mp4(path)
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory, mp4) -> Path:
    """root with 3 subjects x 5 classes (columns in another order, plus an extra one), and a complete crop cache."""
    base = tmp_path_factory.mktemp("template")
    root = base / "biovid"
    lines = ["sample_name\tsubject_id\tnotes\tclass_name\tsubject_name\tclass_id\tsample_id"]
    keys = []
    for sid, subject in SUBJECTS:
        for cid, cname in enumerate(CLASSES):
            name = f"{subject}-{cname}-{cid + 1:03d}"
            lines.append(f"{name}\t{sid}\tfree text\t{cname}\t{subject}\t{cid}\t{sid * 5 + cid}")
            (root / "video" / subject).mkdir(parents=True, exist_ok=True)
            shutil.copy(mp4, root / "video" / subject / f"{name}.mp4")
            bio = root / "biosignals_filtered" / subject / f"{name}_bio.csv"
            bio.parent.mkdir(parents=True, exist_ok=True)
            bio.write_text(bio_text(seed=sid * 5 + cid))
            keys.append(f"{subject}/{name}")
    (root / "samples.csv").write_text("\n".join(lines) + "\n")
    write_cache(base / "cache", keys)
    return base


@pytest.fixture
def biovid(template, tmp_path) -> tuple[Path, Path]:
    """A fresh copy of the template dataset and cache, for the test to break."""
    shutil.copytree(template, tmp_path / "copy")
    return tmp_path / "copy" / "biovid", tmp_path / "copy" / "cache"


# -- samples.csv -----------------------------------------------------------------------------------------------------


def test_read_samples_csv_fields(biovid):
    root, _ = biovid
    samples = read_samples_csv(root)
    assert len(samples) == 15
    s, name = samples[7], "072514_m_27-PA2-003"
    assert s == BioVidSample(subject_id=1, subject_name="072514_m_27", class_id=2, class_name="PA2", sample_id=7,
                             sample_name=name, video_path=root / "video" / "072514_m_27" / f"{name}.mp4",
                             biosignal_path=root / "biosignals_filtered" / "072514_m_27" / f"{name}_bio.csv")
    assert s.key == "072514_m_27/072514_m_27-PA2-003" and s.subject == "072514_m_27"
    assert [x.class_id for x in samples[:5]] == [0, 1, 2, 3, 4]


def test_not_a_biovid_root(tmp_path):
    with pytest.raises(DatasetError, match=r"is not a BioVid Part A root: expected samples.csv"):
        read_samples_csv(tmp_path)
    (tmp_path / "PartA").mkdir()
    (tmp_path / "PartA" / "samples.csv").write_text("x\n")
    with pytest.raises(DatasetError, match="PartA"):
        read_samples_csv(tmp_path)


@pytest.mark.parametrize(("text", "problem"), [
    ("subject_id\tsubject_name\tclass_id\tsample_id\tsample_name\n", "missing column(s) class_name"),
    ("subject_id,subject_name,class_id,class_name,sample_id,sample_name\n", "missing column(s) subject_id"),
    ("", "empty"),
    ("subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name\n0\ts\tx\tBL1\t1\tn\n",
     "line 2: class_id 'x' is not an integer"),
    ("subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name\n0\ts\t7\tPA7\t1\tn\n",
     "line 2: class_id 7 is not in 0..4"),
    ("subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name\n0\ts\t1\tPA4\t1\tn\n",
     "line 2: class_name 'PA4' does not match class_id 1"),
    ("subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name\n0\ts\t1\n", "line 2: 3 field(s)"),
    ("subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name\n0\ts\t0\tBL1\t1\tn\n0\ts\t0\tBL1\t2\tn\n",
     "line 3: sample_name 'n' appears twice"),
])
def test_bad_samples_csv(tmp_path, text, problem):
    (tmp_path / "samples.csv").write_text(text)
    with pytest.raises(DatasetError) as err:
        read_samples_csv(tmp_path)
    assert str(tmp_path / "samples.csv") in str(err.value) and problem in str(err.value)


# -- TSN sampling ----------------------------------------------------------------------------------------------------


def test_tsn_eval_is_the_centre_of_each_segment():
    assert tsn_indices(100, 10, train=False).tolist() == [4, 14, 24, 34, 44, 54, 64, 74, 84, 94]
    assert tsn_indices(138, 10, train=False).tolist() == [6, 19, 33, 47, 61, 75, 88, 102, 116, 130]
    assert tsn_indices(5, 10, train=False).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert tsn_indices(1, 3, train=False).tolist() == [0, 0, 0]


@pytest.mark.parametrize("n", [138, 100, 10, 7])
def test_tsn_train_draws_inside_each_segment(n):
    rng = np.random.default_rng(0)
    edges = np.floor(np.linspace(0, n, 11)).astype(int)
    draws = np.stack([tsn_indices(n, 10, train=True, rng=rng) for _ in range(300)])  # (300, 10)
    lo, hi = np.minimum(edges[:-1], n - 1), np.maximum(edges[1:], np.minimum(edges[:-1], n - 1) + 1)
    assert np.all(draws >= lo) and np.all(draws < hi)
    assert np.all(np.diff(draws, axis=1) >= 0)
    if n >= 100:  # every position of every segment is drawn
        assert all(set(draws[:, k]) == set(range(lo[k], hi[k])) for k in range(10))


def test_dataset_eval_frames_are_deterministic_train_frames_random(biovid):
    root, cache = biovid
    ev = BioVidDataset(root, cache)
    assert frame_ids(ev[0]["video"]) == frame_ids(ev[0]["video"]) == tsn_indices(N_FRAMES, 10, False).tolist()
    tr = BioVidDataset(root, cache, train=True)
    torch.manual_seed(0)
    a = [frame_ids(tr[0]["video"]) for _ in range(20)]
    torch.manual_seed(0)
    assert a == [frame_ids(tr[0]["video"]) for _ in range(20)]  # reproducible from torch's seed
    assert len({tuple(x) for x in a}) > 1
    edges = np.floor(np.linspace(0, N_FRAMES, 11)).astype(int)
    assert all(edges[k] <= x[k] < edges[k + 1] for x in a for k in range(10))


# -- dataset ---------------------------------------------------------------------------------------------------------


def test_dataset_item(biovid):
    root, cache = biovid
    ds = BioVidDataset(root, cache)
    assert len(ds) == 15 and ds.skipped == [] and ds.num_classes == 5
    assert ds.labels == [0, 1, 2, 3, 4] * 3
    item = ds[6]
    assert set(item) == {"video", "signal", "label", "subject", "key"}
    assert item["video"].shape == (10, 3, SIZE, SIZE) and item["video"].dtype == torch.float32
    assert item["signal"].shape == (1, 2816) and item["signal"].dtype == torch.float32
    assert abs(float(item["signal"].mean())) < 1e-4 and abs(float(item["signal"].std()) - 1) < 1e-3
    assert item["label"] == 1 and item["subject"] == "072514_m_27" and item["key"] == "072514_m_27/072514_m_27-PA1-002"
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["video"].shape == (4, 10, 3, SIZE, SIZE) and batch["label"].tolist() == [0, 1, 2, 3]


def test_dataset_spectrogram_and_channels(biovid):
    root, cache = biovid
    ds = BioVidDataset(root, cache, channels=("gsr", "emg_trapezius"), signal="spectrogram", num_frames=4)
    item = ds[0]
    assert item["signal"].shape == (2, 65, 127) and item["video"].shape == (4, 3, SIZE, SIZE)
    assert "signal" not in BioVidDataset(root, cache, with_signal=False)[0]


def test_binary_task_keeps_bl1_and_pa4(biovid):
    root, cache = biovid
    ds = BioVidDataset(root, cache, task="binary")
    assert len(ds) == 6 and ds.num_classes == 2 and ds.skipped == []
    assert [s.class_name for s in ds.samples] == ["BL1", "PA4"] * 3
    assert [ds[i]["label"] for i in range(6)] == [0, 1] * 3


def test_samples_from_a_split_as_objects_or_keys(biovid):
    root, cache = biovid
    samples = read_samples_csv(root)
    ds = BioVidDataset(root, cache, samples[5:8])
    assert [s.key for s in ds.samples] == [s.key for s in samples[5:8]]
    ds = BioVidDataset(root, cache, [samples[9].key])
    assert ds[0]["key"] == samples[9].key
    with pytest.raises(DatasetError, match="not in .*samples.csv"):
        BioVidDataset(root, cache, ["nobody/nothing"])


def test_bad_options(biovid):
    root, cache = biovid
    with pytest.raises(ConfigError, match="task"):
        BioVidDataset(root, cache, task="three")
    with pytest.raises(ConfigError, match="channels"):
        BioVidDataset(root, cache, channels=("eeg",))
    with pytest.raises(ConfigError, match="signal"):
        BioVidDataset(root, cache, signal="wavelet")


def test_not_a_cache_or_the_wrong_cache(biovid, tmp_path):
    root, _ = biovid
    with pytest.raises(DatasetError, match="not a face-crop cache"):
        BioVidDataset(root, tmp_path / "nowhere")
    other = write_cache(tmp_path / "affcache", [], dataset="affwild2")
    with pytest.raises(DatasetError, match="cache of 'affwild2', not of BioVid"):
        BioVidDataset(root, other)


# -- broken samples: skip (counted) or strict (DatasetError naming the file) ----------------------------------------


def _break(root: Path, cache: Path, how: str) -> tuple[str, Path]:
    """Break sample 3 (071309_w_21-PA3-004) one way; returns the expected skip reason and the file to be named."""
    s = read_samples_csv(root)[3]
    if how == "video missing":
        s.video_path.unlink()
        return how, s.video_path
    if how == "biosignal missing":
        s.biosignal_path.unlink()
        return how, s.biosignal_path
    if how == "empty biosignal":
        s.biosignal_path.write_text("")
    elif how == "truncated biosignal":  # cut before a tab half way: the last line has fewer than 4 fields
        text = s.biosignal_path.read_text()
        s.biosignal_path.write_text(text[: text.index("\t", len(text) // 2)])
    elif how == "nan biosignal":
        lines = s.biosignal_path.read_text().splitlines()
        fields = lines[2].split("\t")
        fields[1] = "nan"
        lines[2] = "\t".join(fields)
        s.biosignal_path.write_text("\n".join(lines) + "\n")
    elif how == "256 Hz biosignal":
        lines = s.biosignal_path.read_text().splitlines()
        s.biosignal_path.write_text("\n".join([lines[0]] + [
            "\t".join([str(round(i * 1e6 / 256))] + ln.split("\t")[1:]) for i, ln in enumerate(lines[1:])]))
    elif how == "no face":
        write_cache(cache, [s.key], has_face=False)
        return how, s.video_path
    elif how == "not in cache":
        (cache / "crops" / f"{s.key}.meta.npz").unlink()
        return how, s.video_path
    return "biosignal unreadable", s.biosignal_path


@pytest.mark.parametrize("how", ["video missing", "biosignal missing", "empty biosignal", "truncated biosignal",
                                 "nan biosignal", "256 Hz biosignal", "no face", "not in cache"])
def test_broken_sample_skipped_or_strict(biovid, how):
    root, cache = biovid
    reason, named = _break(root, cache, how)
    ds = BioVidDataset(root, cache)
    assert len(ds) == 14 and len(ds.skipped) == 1 and ds.skip_counts == {reason: 1}
    assert ds.skipped[0].key == "071309_w_21/071309_w_21-PA3-004" and str(named) in ds.skipped[0].detail
    assert "071309_w_21-PA3-004" not in [s.sample_name for s in ds.samples]
    with pytest.raises(DatasetError) as err:
        BioVidDataset(root, cache, strict=True)
    assert str(named) in str(err.value)


@pytest.mark.parametrize(("how", "problem"), [
    ("empty biosignal", "empty"), ("truncated biosignal", "truncated"), ("nan biosignal", "not finite"),
    ("256 Hz biosignal", "sampling rate"), ("no face", "no face"), ("not in cache", "pkdot prepare"),
    ("video missing", "not found"),
])
def test_strict_messages_say_the_problem(biovid, how, problem):
    root, cache = biovid
    _break(root, cache, how)
    with pytest.raises(DatasetError, match=problem):
        BioVidDataset(root, cache, strict=True)


def test_binary_task_ignores_broken_classes_it_does_not_use(biovid):
    root, cache = biovid
    _break(root, cache, "video missing")  # a PA3 sample
    assert BioVidDataset(root, cache, task="binary", strict=True).skipped == []


def test_unreadable_video_checked_on_request(biovid):
    root, cache = biovid
    s = read_samples_csv(root)[0]
    s.video_path.write_bytes(b"not a video at all")
    assert len(BioVidDataset(root, cache)) == 15  # by default the cache entry stands for the video
    ds = BioVidDataset(root, cache, check_videos=True)
    assert ds.skip_counts == {"video unreadable": 1} and str(s.video_path) in ds.skipped[0].detail


def test_missing_channel_everywhere_leaves_nothing(biovid):
    root, cache = biovid
    with pytest.raises(DatasetError, match=r"no usable BioVid sample .*biosignal unreadable': 15"):
        BioVidDataset(root, cache, channels=("emg_corrugator",))
    with pytest.raises(DatasetError, match="emg_corrugator not in the recording"):
        BioVidDataset(root, cache, channels=("emg_corrugator",), strict=True)


def test_corrugator_channel_when_the_release_has_it(biovid):
    root, cache = biovid
    cols = ("time", "gsr", "ecg", "emg_trapezius", "emg_corrugator", "emg_zygomaticus")
    for s in read_samples_csv(root):
        s.biosignal_path.write_text(bio_text(columns=cols))
    ds = BioVidDataset(root, cache, channels=("emg_corrugator",), signal="spectrogram")
    assert len(ds) == 15 and ds[0]["signal"].shape == (1, 65, 127)


def test_shorter_cache_and_video_longer_than_the_window(biovid, tmp_path):
    root, cache = biovid
    s = read_samples_csv(root)[0]
    write_cache(cache, [s.key], n=200)  # 8 s of frames: only frames 0..137 are in the 5.5 s window
    ds = BioVidDataset(root, cache, num_frames=10)
    assert max(frame_ids(ds[0]["video"])) < 138
    write_cache(cache, [s.key], n=4)  # fewer crops than frames wanted: crops repeat in order
    assert frame_ids(BioVidDataset(root, cache, num_frames=10)[0]["video"]) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]


# -- the synthetic generator writes what this reader reads ----------------------------------------------------------


@pytest.mark.slow
def test_reads_a_synthetic_biovid(tmp_path):
    synth = pytest.importorskip("training.data.synth")
    from pkdot_contract.preprocessing.media import read_video
    from training.data.splits import make_splits

    root = tmp_path / "synth"
    synth.write_biovid(root, subjects=2, samples_per_class=1, seed=3, size=(160, 160))
    samples = read_samples_csv(root)
    assert len(samples) == 10 and sorted({s.class_id for s in samples}) == [0, 1, 2, 3, 4]
    assert all(s.video_path.is_file() and s.biosignal_path.is_file() for s in samples)
    cache = CropCache(tmp_path / "cache")  # centre crops of the decoded frames stand in for `pkdot prepare`
    cache.write_meta({"dataset": "biovid", "crop": SPEC.to_dict()})
    for s in samples:
        frames, fps = read_video(s.video_path)
        assert (len(frames), fps) == (N_FRAMES, FPS)
        crops = np.stack([cv2_resize(f[40:120, 40:120]) for f in frames])
        n = len(crops)
        cache.write(s.key, crops, np.arange(n), np.zeros((n, 4)), np.ones(n), np.ones(n, bool), fps)
    ds = BioVidDataset(root, cache, channels=("gsr", "ecg", "emg_trapezius"), signal="spectrogram", strict=True,
                       check_videos=True)
    assert len(ds) == 10 and ds.skipped == []
    item = ds[0]
    assert item["video"].shape == (10, 3, SIZE, SIZE) and item["signal"].shape == (3, 65, 127)
    assert torch.isfinite(item["signal"]).all() and item["video"].std() > 0
    (fold,) = [sp for sp in make_splits(ds.samples, k=2, val_fraction=0.0) if sp.fold == 0]
    assert len(fold.train) == len(fold.test) == 5


def cv2_resize(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(np.ascontiguousarray(rgb), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
