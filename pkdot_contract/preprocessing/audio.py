"""Log-mel spectrograms of short audio windows (the privileged modality of the affect task). numpy only.

Training (`training.data.affwild2`) and the service's teacher endpoint call these same functions.

Defaults (16 kHz mono in [-1, 1]): 1 s windows, 25 ms periodic Hann window (win_length 400) zero-padded to
n_fft 512, 10 ms hop (hop_length 160), centred frames (the signal is reflect-padded by n_fft // 2 on both sides),
power spectrum, 64 triangular mel filters (HTK mel scale, unit peak) from 0 Hz to sample_rate / 2, natural log of
(mel power + 1e-6). A 1 s window gives (64, 101).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pkdot_contract.preprocessing.media import MediaError

AUDIO_RATE_HZ = 16000
N_MELS = 64
WINDOW_S = 1.0
N_FFT = 512
WIN_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz
LOG_EPS = 1e-6  # log(mel + eps): silence is ln(1e-6) = -13.8


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int = AUDIO_RATE_HZ, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters, float32 (n_mels, n_fft // 2 + 1), read-only.

    Filter m rises linearly from mel point m to m + 1 and falls to m + 2 (n_mels + 2 points equally spaced on
    the mel scale between fmin and fmax), peak 1, evaluated at the FFT bin frequencies.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin={fmin}, fmax={fmax}")
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)  # (K,) bin frequencies in Hz
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1) each
    rising = (bins[None, :] - lower) / (centre - lower)  # (n_mels, K)
    falling = (upper - bins[None, :]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    fb.setflags(write=False)
    return fb


def log_mel(audio: np.ndarray, sample_rate: int = AUDIO_RATE_HZ, n_mels: int = N_MELS,
            window_s: float | None = WINDOW_S, *, n_fft: int = N_FFT, win_length: int = WIN_LENGTH,
            hop_length: int = HOP_LENGTH, fmin: float = 0.0, fmax: float | None = None,
            eps: float = LOG_EPS) -> np.ndarray:
    """Log-mel spectrogram of mono audio: float32 (n_mels, frames), frames = 1 + n // hop_length.

    audio: float (n,) mono samples in [-1, 1] at `sample_rate` (e.g. from `audio_window`). With `window_s` set, the
    audio is first cut or zero-padded at the end to exactly round(window_s * sample_rate) samples, so every window
    gives the same number of frames (101 for 1 s at the defaults); window_s=None keeps its length.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise MediaError(f"audio must be mono, one dimension (n,), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise MediaError("the audio has non-finite samples (NaN or inf)")
    if win_length > n_fft:
        raise ValueError(f"win_length {win_length} exceeds n_fft {n_fft}")
    if window_s is not None:
        n = round(window_s * sample_rate)
        x = np.pad(x[:n], (0, max(0, n - len(x))))
    half = n_fft // 2
    padded = np.pad(x, half, mode="reflect" if len(x) > half else "constant")  # (n + n_fft,)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]  # (frames, n_fft)
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left : left + win_length] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (frames, n_fft // 2 + 1)
    mel = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax) @ power.T  # (n_mels, frames)
    return np.log(mel + eps).astype(np.float32)


def log_mel_shape(sample_rate: int = AUDIO_RATE_HZ, n_mels: int = N_MELS, window_s: float = WINDOW_S,
                  hop_length: int = HOP_LENGTH) -> tuple[int, int]:
    """(n_mels, frames) of `log_mel` for a fixed window, without computing it."""
    return n_mels, 1 + round(window_s * sample_rate) // hop_length


def audio_window(audio: np.ndarray, sample_rate: int, centre_s: float, length_s: float = WINDOW_S) -> np.ndarray:
    """The `length_s` seconds of audio centred on `centre_s`: float32 (round(length_s * sample_rate),).

    Samples before the start or after the end of the recording are zeros (silence), so windows at the edges of a
    video keep their length.
    """
    n = round(length_s * sample_rate)
    start = round(centre_s * sample_rate) - n // 2
    out = np.zeros(n, np.float32)
    lo, hi = max(start, 0), min(start + n, len(audio))
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out
