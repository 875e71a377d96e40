"""Physiological responses to a heat-pain stimulus: skin conductance (GSR), ECG and trapezius EMG at 512 Hz.

The privileged modality of the pain task. Every channel follows the sample's latent response r (pain.py:
I * kappa_s * exp(N(0, 0.15)), I = 0 for BL1 ... 1 for PA4; passed as `intensity`) through a subject-specific but
stable gain, so that it carries the label far more reliably
than the face does. Time t is in seconds from the start of the 5.5 s window. Equations and parameter ranges are
in docs/synthetic-data.md, "Biosignals".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIO_RATE = 512  # Hz, as in BioVid
BIO_CHANNELS = ("gsr", "ecg", "emg_trapezius")


@dataclass(frozen=True)
class Physiology:
    """One subject's physiology: tonic levels and how strongly each channel responds to pain."""

    gsr_level: float  # tonic skin conductance, microsiemens
    gsr_gain: float  # phasic response amplitude at I = 1, microsiemens
    emg_floor: float  # resting EMG amplitude (standard deviation), microvolts
    emg_gain: float  # burst amplitude (standard deviation) at I = 1, microvolts
    heart_rate: float  # resting heart rate, beats per minute
    hr_gain: float  # heart-rate increase at I = 1, beats per minute
    ecg_amplitude: float  # R-peak amplitude, millivolts


def make_physiology(rng: np.random.Generator) -> Physiology:
    return Physiology(
        gsr_level=float(rng.uniform(2.0, 12.0)),
        gsr_gain=float(0.8 * np.exp(rng.normal(0.0, 0.2))),
        emg_floor=float(rng.uniform(1.5, 3.0)),
        emg_gain=float(8.0 * np.exp(rng.normal(0.0, 0.2))),
        heart_rate=float(rng.uniform(58.0, 85.0)),
        hr_gain=float(rng.uniform(4.0, 10.0)),
        ecg_amplitude=float(rng.uniform(0.7, 1.3)),
    )


def scr(t: np.ndarray, onset: float, rise: float = 0.75, decay: float = 2.5) -> np.ndarray:
    """Skin conductance response of unit peak: a Bateman function exp(-t'/decay) - exp(-t'/rise), t' = t - onset."""
    tp = np.clip(t - onset, 0.0, None)
    peak_t = np.log(decay / rise) * rise * decay / (decay - rise)
    peak = np.exp(-peak_t / decay) - np.exp(-peak_t / rise)
    return (np.exp(-tp / decay) - np.exp(-tp / rise)) / peak


def band_noise(rng: np.random.Generator, n: int, rate: float, low: float, high: float) -> np.ndarray:
    """Gaussian noise band-limited to [low, high] Hz (FFT mask), unit standard deviation."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spec[(freqs < low) | (freqs > high)] = 0.0
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def _window(t: np.ndarray, onset: float, duration: float) -> np.ndarray:
    u = np.clip((t - onset) / duration, 0.0, 1.0)
    return np.sin(np.pi * u) ** 2


def gsr(phys: Physiology, intensity: float, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tonic level + drift + one phasic response scaled by the intensity + spontaneous responses + noise."""
    amplitude = phys.gsr_gain * intensity * np.exp(rng.normal(0.0, 0.1))
    onset = rng.uniform(1.2, 2.2)  # latency of the response within the window
    x = phys.gsr_level + rng.normal(0.0, 0.3) + rng.normal(0.0, 0.03) * t + amplitude * scr(t, onset)
    for _ in range(rng.poisson(0.15 * (t[-1] + 2.0))):  # non-specific responses, unrelated to the stimulus
        x += rng.uniform(0.02, 0.3) * phys.gsr_gain * scr(t, rng.uniform(-2.0, t[-1]))
    return x + 0.003 * rng.standard_normal(len(t))


def emg(phys: Physiology, intensity: float, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Resting activity + a burst whose amplitude grows with the intensity; 20-250 Hz like surface EMG."""
    n = len(t)
    burst = phys.emg_gain * intensity * np.exp(rng.normal(0.0, 0.1))
    envelope = burst * _window(t, rng.uniform(0.6, 1.4), rng.uniform(2.8, 3.6))
    if rng.random() < 0.3:  # a movement artefact, unrelated to the stimulus
        envelope += rng.uniform(0.0, 0.6) * phys.emg_gain * _window(t, rng.uniform(0.0, t[-1]), rng.uniform(0.3, 1))
    floor = phys.emg_floor * band_noise(rng, n, BIO_RATE, 20.0, 250.0)
    return floor + envelope * band_noise(rng, n, BIO_RATE, 20.0, 250.0)


def ecg(phys: Physiology, intensity: float, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-wave PQRST beats; the heart rate rises by hr_gain * I over the window, with respiratory
    sinus arrhythmia; baseline wander and noise."""
    te = np.arange(-BIO_RATE, len(t) + BIO_RATE) / BIO_RATE  # one second of margin: beats next to the window
    rise = 1.0 / (1.0 + np.exp(-(te - rng.uniform(1.5, 2.5)) / 0.5))
    rsa = rng.uniform(1.0, 3.0) * np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * te + rng.uniform(0, 2 * np.pi))
    bpm = phys.heart_rate + phys.hr_gain * intensity * rise + rsa
    phase = rng.uniform(0.0, 1.0) + np.cumsum(bpm / 60.0) / BIO_RATE  # beats, increasing
    beat_times = np.interp(np.arange(np.ceil(phase[0]), phase[-1]), phase, te)  # R-peak times
    # (offset s, width s, amplitude relative to R) for P, Q, R, S, T
    waves = ((-0.20, 0.025, 0.12), (-0.035, 0.010, -0.15), (0.0, 0.012, 1.0), (0.035, 0.012, -0.25),
             (0.26, 0.050, 0.30))  # fmt: skip
    x = np.zeros_like(t)
    for r in beat_times:
        for offset, width, amp in waves:
            x += amp * np.exp(-((t - r - offset) ** 2) / (2 * width**2))
    wander = 0.05 * np.sin(2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 2 * np.pi))
    return phys.ecg_amplitude * x + wander + 0.01 * rng.standard_normal(len(t))


def pain_biosignals(phys: Physiology, intensity: float, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """All channels of one sample, n samples at BIO_RATE: {"gsr": (n,), "ecg": (n,), "emg_trapezius": (n,)}."""
    t = np.arange(n) / BIO_RATE
    return {"gsr": gsr(phys, intensity, t, rng), "ecg": ecg(phys, intensity, t, rng),
            "emg_trapezius": emg(phys, intensity, t, rng)}
