"""BioVid biosignals: reading, windowing and the spectrogram the physiological backbone sees. numpy/scipy only.

Training (`training.data.biovid`) and the service's teacher endpoint call these same functions, so a biosignal
becomes the same model input on both sides.

File format (BioVid Heat Pain Part A, `biosignals_filtered/<subject>/<sample>_bio.csv`): tab-separated, one header
line `time gsr ecg emg_trapezius` (some releases add `emg_corrugator emg_zygomaticus`), then one row per sample;
`time` in microseconds, 512 Hz (one row every 1953.125 µs, written as integers).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

BIOVID_RATE_HZ = 512.0
TIME_COLUMN = "time"
BIOSIGNAL_CHANNELS = ("gsr", "ecg", "emg_trapezius", "emg_corrugator", "emg_zygomaticus")
REQUIRED_CHANNELS = ("gsr", "ecg", "emg_trapezius")  # every Part A release has these

# The spectrogram of the released PKDOT code: scipy.signal.spectrogram on seconds 2-5 of the 5.5 s window.
SPECTROGRAM_START_S = 2.0
SPECTROGRAM_END_S = 5.0
SPECTROGRAM_NPERSEG = 16
SPECTROGRAM_NOVERLAP = 4
SPECTROGRAM_NFFT = 128
SPECTROGRAM_EPS = 1e-6  # log(S + eps): floor of the log-compressed power, ln(1e-6) = -13.8


class SignalError(ValueError):
    """A biosignal that cannot be used: unreadable file, bad header, bad values, wrong sampling rate."""


class Biosignals(NamedTuple):
    rate_hz: float  # sampling rate in Hz
    channels: dict[str, np.ndarray]  # channel name -> float32 (N,), all the same length, in file column order


# -- reading ---------------------------------------------------------------------------------------------------------


def read_biosignal_csv(source: str | os.PathLike | bytes, *, name: str | None = None,
                       expected_rate_hz: float | None = BIOVID_RATE_HZ, rate_tolerance: float = 0.02) -> Biosignals:
    """Read a BioVid biosignal file (a path, or the file's bytes) into (rate_hz, {channel: float32 (N,)}).

    Checks, each failing with a `SignalError` that names the file, line and column: the file is UTF-8 text; the
    header is tab-separated and holds `time` and the channels gsr, ecg, emg_trapezius (emg_corrugator and
    emg_zygomaticus optional; no other, no duplicate); at least two rows; every row has one value per column (a
    short row means a truncated file); every value is a finite number; time strictly increases; the sampling rate
    measured from the time column, (N - 1) / (t_last - t_first), is within `rate_tolerance` (relative) of
    `expected_rate_hz`. The returned rate is `expected_rate_hz` when that check passes (so windows of all files have
    the same length), the measured rate when `expected_rate_hz` is None.
    """
    if isinstance(source, bytes):
        label, data = name or "the biosignal", source
    else:
        label = name or os.fspath(source)
        try:
            with open(source, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise SignalError(f"{label}: biosignal file not found") from None
        except OSError as exc:
            raise SignalError(f"{label}: biosignal file unreadable: {exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SignalError(f"{label}: not a text file ({exc.reason} at byte {exc.start})") from None

    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise SignalError(f"{label}: the biosignal file is empty")
    header = [h.strip() for h in lines[0].split("\t")]
    _check_header(header, label)
    rows = [ln.split("\t") for ln in lines[1:]]
    if len(rows) < 2:
        raise SignalError(f"{label}: {len(rows)} data row(s) after the header; a recording needs at least 2")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise SignalError(f"{label}, line {i + 2}: {len(row)} field(s), expected {len(header)} "
                              f"({' '.join(header)}); is the file truncated?")
    try:
        values = np.array(rows, dtype=np.float64)  # (N, columns)
    except ValueError:
        raise SignalError(_first_unparsable(rows, header, label)) from None
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise SignalError(f"{label}, line {r + 2}, column {header[c]!r}: value {rows[r][c].strip()!r} is not finite")
    channel_columns = [j for j, h in enumerate(header) if h != TIME_COLUMN]
    huge = np.abs(values[:, channel_columns]) > np.finfo(np.float32).max  # channels are float32: they would be inf
    if huge.any():
        r, c = np.argwhere(huge)[0]
        raise SignalError(f"{label}, line {r + 2}, column {header[channel_columns[c]]!r}: value "
                          f"{rows[r][channel_columns[c]].strip()!r} is out of range")

    time_us = values[:, header.index(TIME_COLUMN)]
    step = np.diff(time_us)
    if (step <= 0).any():
        r = int(np.argmax(step <= 0)) + 1
        raise SignalError(f"{label}, line {r + 2}: time {time_us[r]:g} µs does not increase "
                          f"(previous {time_us[r - 1]:g} µs)")
    measured = (len(time_us) - 1) / ((time_us[-1] - time_us[0]) * 1e-6)
    rate = measured
    if expected_rate_hz is not None:
        if abs(measured - expected_rate_hz) > rate_tolerance * expected_rate_hz:
            raise SignalError(f"{label}: sampling rate from the time column is {measured:.4g} Hz, expected "
                              f"{expected_rate_hz:g} Hz (±{rate_tolerance:.0%}); the time column must be in "
                              "microseconds")
        rate = float(expected_rate_hz)
    channels = {h: values[:, j].astype(np.float32) for j, h in enumerate(header) if h != TIME_COLUMN}
    return Biosignals(float(rate), channels)


def _check_header(header: list[str], label: str) -> None:
    known = (TIME_COLUMN, *BIOSIGNAL_CHANNELS)
    if len(header) == 1 and (" " in header[0] or "," in header[0]):
        raise SignalError(f"{label}: the header {header[0]!r} is not tab-separated")
    unknown = [h for h in header if h not in known]
    if unknown:
        raise SignalError(f"{label}: unknown column(s) {', '.join(map(repr, unknown))} in the header; "
                          f"expected {' '.join(known[:4])} [emg_corrugator emg_zygomaticus]")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise SignalError(f"{label}: duplicated column(s) {', '.join(duplicated)} in the header")
    missing = [h for h in (TIME_COLUMN, *REQUIRED_CHANNELS) if h not in header]
    if missing:
        raise SignalError(f"{label}: missing column(s) {', '.join(missing)} in the header "
                          f"(has: {' '.join(header)})")


def _first_unparsable(rows: list[list[str]], header: list[str], label: str) -> str:
    for i, row in enumerate(rows):
        for j, field in enumerate(row):
            try:
                float(field)
            except ValueError:
                return f"{label}, line {i + 2}, column {header[j]!r}: {field.strip()!r} is not a number"
    return f"{label}: unparsable values"  # not reached: numpy and float() reject the same strings


def validate_biosignals(rate_hz: float, channels: Mapping[str, Sequence[float] | np.ndarray], *,
                        name: str = "the biosignal") -> Biosignals:
    """Check biosignals given as numbers (the service's JSON form) and return them as float32 `Biosignals`.

    Channel names must be among BIOSIGNAL_CHANNELS; every channel 1-D, non-empty, finite, all of one length.
    """
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise SignalError(f"{name}: rate_hz must be a positive number, not {rate_hz!r}")
    if not channels:
        raise SignalError(f"{name}: no channels")
    out: dict[str, np.ndarray] = {}
    for ch, values in channels.items():
        if ch not in BIOSIGNAL_CHANNELS:
            raise SignalError(f"{name}: unknown channel {ch!r}; expected some of {', '.join(BIOSIGNAL_CHANNELS)}")
        try:
            x = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError):
            raise SignalError(f"{name}: channel {ch!r} is not a list of numbers") from None
        if x.ndim != 1 or len(x) == 0:
            raise SignalError(f"{name}: channel {ch!r} must be a non-empty 1-D list, got shape {x.shape}")
        if not np.isfinite(x).all():
            first = int(np.argmin(np.isfinite(x)))
            raise SignalError(f"{name}: channel {ch!r} has a non-finite value at index {first}")
        out[ch] = x
    lengths = {len(x) for x in out.values()}
    if len(lengths) > 1:
        raise SignalError(f"{name}: channels have different lengths "
                          f"({', '.join(f'{k}={len(v)}' for k, v in out.items())})")
    return Biosignals(float(rate_hz), out)


# -- model inputs ----------------------------------------------------------------------------------------------------


NORMALISATIONS = ("zscore", "baseline", "none")


def biosignal_window(channels: Mapping[str, np.ndarray], rate_hz: float, names: Sequence[str], start_s: float = 0.0,
                     end_s: float = 5.5, *, normalise: str = "zscore", max_pad_s: float = 0.25,
                     baseline_s: float = 0.5) -> np.ndarray:
    """The window [start_s, end_s) of the named channels, one row each: float32 (C, L), L = round((end-start)*rate).

    Time is counted from the first sample of the recording. A recording that ends (at most `max_pad_s`) before the
    window does is padded by repeating its last value; a longer shortfall is a `SignalError`.

    normalise="zscore" (default): each channel of the window minus its mean, divided by its standard deviation
    (a flat channel becomes zeros). This removes the per-person offset and gain of GSR and EMG, which say more
    about skin and electrode than about pain, and keeps the window's shape. normalise="baseline": each channel
    minus its mean over the first `baseline_s` seconds of the window, in raw units, so that the size of a response
    is kept (what a phasic GSR or EMG response measures). normalise="none" keeps raw units.
    """
    if not names:
        raise SignalError("no biosignal channel selected")
    missing = [n for n in names if n not in channels]
    if missing:
        raise SignalError(f"channel(s) {', '.join(missing)} not in the recording (has: {', '.join(channels)})")
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, not {normalise!r}")
    if end_s <= start_s or start_s < 0:
        raise ValueError(f"invalid window [{start_s}, {end_s}) s")
    i0, length = round(start_s * rate_hz), round((end_s - start_s) * rate_hz)
    x = np.stack([np.asarray(channels[n], np.float32)[i0 : i0 + length] for n in names])  # (C, <=L)
    short = length - x.shape[1]
    if short > max_pad_s * rate_hz:
        have = len(channels[names[0]]) / rate_hz
        raise SignalError(f"the recording lasts {have:.3g} s; the window [{start_s:g}, {end_s:g}) s needs "
                          f"{end_s:g} s")
    if short > 0:
        x = np.pad(x, ((0, 0), (0, short)), mode="edge")  # (C, L)
    if normalise == "zscore":
        mean = x.mean(axis=1, keepdims=True)
        std = x.std(axis=1, keepdims=True)
        x = (x - mean) / np.where(std > 1e-8, std, 1.0)
    elif normalise == "baseline":
        x = x - x[:, : max(1, round(baseline_s * rate_hz))].mean(axis=1, keepdims=True)
    return x.astype(np.float32)


def spectrogram(x: np.ndarray, rate_hz: float = BIOVID_RATE_HZ, *, start_s: float = SPECTROGRAM_START_S,
                end_s: float = SPECTROGRAM_END_S, nperseg: int = SPECTROGRAM_NPERSEG,
                noverlap: int = SPECTROGRAM_NOVERLAP, nfft: int = SPECTROGRAM_NFFT,
                eps: float = SPECTROGRAM_EPS) -> np.ndarray:
    """Log power spectrogram of seconds [start_s, end_s) of a window (the released PKDOT code: seconds 2-5).

    x: (..., L) a window that starts at second 0 of the sample (e.g. `biosignal_window(...)`, (C, L)).
    Returns float32 (..., F, T') = log(S + eps), S = scipy.signal.spectrogram(..., fs=rate, nperseg, noverlap, nfft)
    (Tukey window, constant detrend, PSD density). F = nfft // 2 + 1, T' = 1 + (n - nperseg) // (nperseg - noverlap)
    with n = round((end_s - start_s) * rate); at 512 Hz with the defaults: (..., 65, 127).
    """
    from scipy.signal import spectrogram as scipy_spectrogram

    i0, i1 = round(start_s * rate_hz), round(end_s * rate_hz)
    if x.shape[-1] < i1:
        raise SignalError(f"the window has {x.shape[-1]} samples ({x.shape[-1] / rate_hz:.3g} s); the spectrogram "
                          f"needs seconds {start_s:g}-{end_s:g}")
    _, _, s = scipy_spectrogram(np.asarray(x[..., i0:i1], np.float64), fs=rate_hz, nperseg=nperseg,
                                noverlap=noverlap, nfft=nfft)  # (..., F, T')
    return np.log(s + eps).astype(np.float32)


def spectrogram_shape(rate_hz: float = BIOVID_RATE_HZ, *, start_s: float = SPECTROGRAM_START_S,
                      end_s: float = SPECTROGRAM_END_S, nperseg: int = SPECTROGRAM_NPERSEG,
                      noverlap: int = SPECTROGRAM_NOVERLAP, nfft: int = SPECTROGRAM_NFFT) -> tuple[int, int]:
    """(F, T') of `spectrogram` for these parameters, without computing it."""
    n = round(end_s * rate_hz) - round(start_s * rate_hz)
    return nfft // 2 + 1, 1 + (n - nperseg) // (nperseg - noverlap)
