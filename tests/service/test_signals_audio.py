"""Biosignal and audio features (torch-free, shared by training and the teacher endpoint)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import spectrogram as scipy_spectrogram

from pkdot_contract.preprocessing.audio import (
    audio_window,
    hz_to_mel,
    log_mel,
    log_mel_shape,
    mel_filterbank,
    mel_to_hz,
)
from pkdot_contract.preprocessing.media import MediaError
from pkdot_contract.preprocessing.signals import (
    SignalError,
    biosignal_window,
    read_biosignal_csv,
    spectrogram,
    spectrogram_shape,
    validate_biosignals,
)

RATE = 512


def bio_text(n: int = 300, rate: float = RATE, columns: tuple[str, ...] = ("time", "gsr", "ecg", "emg_trapezius"),
             rows: list[str] | None = None) -> str:
    """A BioVid biosignal file: tab-separated, time in integer µs, channel c at sample i = (c + 1) * i / 1000."""
    lines = ["\t".join(columns)]
    for i in range(n):
        values = [str(round(i * 1e6 / rate))] + [f"{(c + 1) * i / 1000:.4f}" for c in range(len(columns) - 1)]
        lines.append("\t".join(values))
    return "\n".join(lines + (rows or [])) + "\n"


def write(tmp_path: Path, text: str | bytes, name: str = "s-BL1-001_bio.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


# -- reading ---------------------------------------------------------------------------------------------------------


def test_read_biosignal_csv_from_path_and_bytes(tmp_path):
    p = write(tmp_path, bio_text(300))
    rate, ch = read_biosignal_csv(p)
    assert rate == 512.0
    assert list(ch) == ["gsr", "ecg", "emg_trapezius"]
    for c, name in enumerate(ch):
        assert ch[name].dtype == np.float32 and ch[name].shape == (300,)
        np.testing.assert_allclose(ch[name], (c + 1) * np.arange(300) / 1000, atol=1e-4)
    rate_b, ch_b = read_biosignal_csv(p.read_bytes())
    assert rate_b == rate and all(np.array_equal(ch[k], ch_b[k]) for k in ch)


def test_read_biosignal_csv_five_channel_release(tmp_path):
    cols = ("time", "gsr", "ecg", "emg_trapezius", "emg_corrugator", "emg_zygomaticus")
    rate, ch = read_biosignal_csv(write(tmp_path, bio_text(200, columns=cols)))
    assert list(ch) == list(cols[1:])
    np.testing.assert_allclose(ch["emg_zygomaticus"][10], 5 * 10 / 1000, atol=1e-5)


def test_read_biosignal_csv_crlf_and_measured_rate(tmp_path):
    p = write(tmp_path, bio_text(300, rate=500).replace("\n", "\r\n"))
    rate, ch = read_biosignal_csv(p, expected_rate_hz=None)
    assert rate == pytest.approx(500, rel=1e-4) and len(ch["gsr"]) == 300


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty"),
    ("\n\n", "empty"),
    ("time\tgsr\tecg\temg_trapezius\n", "0 data row"),
    ("time gsr ecg emg_trapezius\n0 1 2 3\n", "not tab-separated"),
    ("time\tgsr\tecg\n0\t1\t2\n1953\t1\t2\n", "missing column(s) emg_trapezius"),
    ("time\tgsr\tecg\temg_trapezius\tpulse\n", "unknown column(s) 'pulse'"),
    ("time\tgsr\tgsr\tecg\temg_trapezius\n", "duplicated column(s) gsr"),
])
def test_bad_header_or_empty(tmp_path, text, problem):
    p = write(tmp_path, text)
    with pytest.raises(SignalError) as err:
        read_biosignal_csv(p)
    assert str(p) in str(err.value) and problem in str(err.value)


def test_truncated_last_row(tmp_path):
    text = bio_text(300).rstrip("\n")
    p = write(tmp_path, text[: text.rfind("\t")])  # the last line loses its last field, as a cut download does
    with pytest.raises(SignalError, match=r"line 301: 3 field\(s\), expected 4 .*truncated") as err:
        read_biosignal_csv(p)
    assert str(p) in str(err.value)


@pytest.mark.parametrize(("bad", "problem"), [
    ("abc", "line 12, column 'ecg': 'abc' is not a number"),
    ("nan", "line 12, column 'ecg': value 'nan' is not finite"),
    ("-inf", "line 12, column 'ecg': value '-inf' is not finite"),
])
def test_bad_values_name_line_and_column(tmp_path, bad, problem):
    lines = bio_text(300).splitlines()
    fields = lines[11].split("\t")
    fields[2] = bad
    lines[11] = "\t".join(fields)
    p = write(tmp_path, "\n".join(lines))
    with pytest.raises(SignalError) as err:
        read_biosignal_csv(p)
    assert str(p) in str(err.value) and problem in str(err.value)


def test_time_not_increasing(tmp_path):
    lines = bio_text(300).splitlines()
    lines[51] = lines[50]  # a repeated timestamp at line 52
    p = write(tmp_path, "\n".join(lines))
    with pytest.raises(SignalError, match="line 52: time .* does not increase"):
        read_biosignal_csv(p)


@pytest.mark.parametrize("rate", [256, 1000, 0.512])  # 0.512: a time column in milliseconds read as µs
def test_wrong_sampling_rate(tmp_path, rate):
    p = write(tmp_path, bio_text(300, rate=rate))
    with pytest.raises(SignalError, match=r"sampling rate from the time column is .* expected 512 Hz") as err:
        read_biosignal_csv(p)
    assert str(p) in str(err.value)


def test_rate_within_tolerance_is_the_nominal_rate(tmp_path):
    rate, _ = read_biosignal_csv(write(tmp_path, bio_text(300, rate=515)))
    assert rate == 512.0


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(SignalError, match="not found"):
        read_biosignal_csv(tmp_path / "nope_bio.csv")
    with pytest.raises(SignalError, match="not a text file"):
        read_biosignal_csv(b"\xff\xfe\x00\x81garbage", name="upload.csv")


def test_validate_biosignals():
    rate, ch = validate_biosignals(512, {"gsr": [1, 2, 3], "ecg": np.zeros(3)})
    assert rate == 512.0 and ch["gsr"].dtype == np.float32 and ch["gsr"].tolist() == [1, 2, 3]
    with pytest.raises(SignalError, match="unknown channel 'eeg'"):
        validate_biosignals(512, {"eeg": [1.0]})
    with pytest.raises(SignalError, match="different lengths"):
        validate_biosignals(512, {"gsr": [1.0, 2.0], "ecg": [1.0]})
    with pytest.raises(SignalError, match="non-finite value at index 1"):
        validate_biosignals(512, {"gsr": [1.0, float("nan")]})
    with pytest.raises(SignalError, match="rate_hz"):
        validate_biosignals(0, {"gsr": [1.0]})
    with pytest.raises(SignalError, match="not a list of numbers"):
        validate_biosignals(512, {"gsr": ["a", "b"]})


# -- windows and spectrograms ----------------------------------------------------------------------------------------


def test_biosignal_window_zscore_and_raw():
    rng = np.random.default_rng(0)
    ch = {"gsr": 5 + 2 * rng.standard_normal(3000).astype(np.float32), "ecg": rng.standard_normal(3000)}
    x = biosignal_window(ch, RATE, ["ecg", "gsr"], 0.0, 5.5)
    assert x.shape == (2, 2816) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=1), 1, atol=1e-4)
    raw = biosignal_window(ch, RATE, ["gsr"], 1.0, 2.0, normalise="none")
    np.testing.assert_array_equal(raw[0], ch["gsr"][512:1024])


def test_biosignal_window_flat_channel_and_padding():
    ch = {"gsr": np.full(2810, 3.0, np.float32)}  # 6 samples short of 5.5 s: padded with the last value
    x = biosignal_window(ch, RATE, ["gsr"], 0.0, 5.5)
    assert x.shape == (1, 2816) and np.all(x == 0)
    raw = biosignal_window({"gsr": np.arange(2810, dtype=np.float32)}, RATE, ["gsr"], normalise="none")
    assert raw[0, -1] == 2809 and raw[0, 2809] == 2809


def test_biosignal_window_errors():
    ch = {"gsr": np.zeros(1000, np.float32)}
    with pytest.raises(SignalError, match="recording lasts 1.95 s"):
        biosignal_window(ch, RATE, ["gsr"], 0.0, 5.5)
    with pytest.raises(SignalError, match="emg_corrugator not in the recording"):
        biosignal_window(ch, RATE, ["emg_corrugator"], 0.0, 1.0)


def test_spectrogram_shape_and_values():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2816)).astype(np.float32)
    s = spectrogram(x, RATE)
    assert s.shape == (2, 65, 127) == (2, *spectrogram_shape(RATE)) and s.dtype == np.float32
    _, _, ref = scipy_spectrogram(x[1, 1024:2560].astype(np.float64), fs=RATE, nperseg=16, noverlap=4, nfft=128)
    np.testing.assert_allclose(s[1], np.log(ref + 1e-6), rtol=1e-5, atol=1e-5)


def test_spectrogram_sees_seconds_2_to_5_only():
    t = np.arange(2816) / RATE
    x = np.sin(2 * np.pi * 64 * t)  # 64 Hz = bin 16 of 65 (4 Hz apart)
    x[(t >= 2) & (t < 5)] = 0.0
    assert np.allclose(spectrogram(x, RATE), np.log(1e-6))
    y = np.sin(2 * np.pi * 64 * t)
    assert np.all(spectrogram(y, RATE).argmax(axis=0) == 16)
    with pytest.raises(SignalError, match="needs seconds 2-5"):
        spectrogram(np.zeros(2000), RATE)


# -- audio -----------------------------------------------------------------------------------------------------------


def test_mel_filterbank():
    fb = mel_filterbank(16000, 512, 64)
    assert fb.shape == (64, 257) and fb.min() >= 0 and fb.max() <= 1
    assert not fb.flags.writeable
    assert np.allclose(mel_to_hz(hz_to_mel([0.0, 440.0, 8000.0])), [0.0, 440.0, 8000.0])
    centres = np.linspace(0, 257, 257)[fb.argmax(axis=1)]
    assert np.all(np.diff(centres) >= 0)  # filters ordered by frequency


def test_log_mel_shape_and_tone():
    sr = 16000
    t = np.arange(sr) / sr
    m = log_mel((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr)
    assert m.shape == (64, 101) == log_mel_shape() and m.dtype == np.float32
    peak = int(np.median(m.argmax(axis=0)))
    edges = mel_to_hz(np.linspace(0, hz_to_mel(8000), 66))
    assert edges[peak] < 1000 < edges[peak + 2]  # the filter whose triangle holds 1 kHz
    assert np.allclose(log_mel(np.zeros(sr, np.float32)), np.log(1e-6))


def test_log_mel_fixed_window_and_errors():
    assert log_mel(np.zeros(5000, np.float32)).shape == (64, 101)  # zero-padded to 1 s
    assert log_mel(np.zeros(40000, np.float32)).shape == (64, 101)  # cut to 1 s
    assert log_mel(np.zeros(3200, np.float32), window_s=None).shape == (64, 21)
    with pytest.raises(MediaError, match="mono"):
        log_mel(np.zeros((2, 16000), np.float32))
    with pytest.raises(MediaError, match="non-finite"):
        log_mel(np.array([0.0, np.nan] * 100, np.float32))


def test_audio_window_pads_at_the_edges():
    audio = np.arange(1, 32001, dtype=np.float32)  # 2 s at 16 kHz
    mid = audio_window(audio, 16000, 1.0)
    assert mid.shape == (16000,) and mid[0] == 8001 and mid[-1] == 24000
    start = audio_window(audio, 16000, 0.0)
    assert np.all(start[:8000] == 0) and start[8000] == 1
    end = audio_window(audio, 16000, 2.0)
    assert end[7999] == 32000 and np.all(end[8000:] == 0)
    assert np.all(audio_window(audio, 16000, 10.0) == 0)


def test_features_are_torch_free():
    import subprocess

    code = ("import sys; import pkdot_contract.preprocessing.signals, pkdot_contract.preprocessing.audio; "
            "sys.exit(int('torch' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0
