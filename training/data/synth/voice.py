"""A synthetic voice whose prosody follows valence and arousal: the privileged modality of the affect task.

Speech is a train of syllables (~4.5 per second) grouped in utterances. Each syllable is a harmonic sound
(source-filter, additive synthesis) shaped by a vowel's formants:

    s(t) = g(t) * env(t) * sum_k  k^(-beta(t)) * R(k f0(t); F(t)) * sin(k * phi(t)),   phi = 2 pi int f0
    f0(t)   = f0_s * 2^(0.7 a(t) + 0.08 u(t))        pitch: the speaker's f0, raised by arousal a, intonation u
    g(t)    = g_s * 10^(6 a(t) / 20)                 loudness: +-6 dB with arousal
    beta(t) = beta_s - 0.6 v(t)                      spectral tilt: positive valence v = a brighter voice
    R(f; F) = sum_i 1 / (1 + ((f - F_i) / B_i)^2)    formant resonances of the syllable's vowel

plus background noise at about -40 dB. See docs/synthetic-data.md, "Voice".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.synth.scene import bump, smooth_noise

AUDIO_RATE = 16_000  # Hz
CONTROL_RATE = 200  # Hz, rate at which pitch, tilt, loudness and formants are computed
# (F1, F2, F3) in Hz of a few vowels: /a/, /i/, /u/, /e/, /o/
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))
BANDWIDTHS = (90.0, 110.0, 170.0)


@dataclass(frozen=True)
class Voice:
    f0: float  # resting pitch, Hz
    tilt: float  # beta_s, spectral slope exponent at neutral valence
    loudness: float  # g_s, amplitude of the fundamental at neutral arousal
    formant_scale: float  # vocal-tract length: multiplies every formant frequency


def make_voice(rng: np.random.Generator) -> Voice:
    return Voice(f0=float(np.exp(rng.uniform(np.log(120.0), np.log(200.0)))), tilt=float(rng.uniform(1.1, 1.5)),
                 loudness=float(rng.uniform(0.05, 0.09)), formant_scale=float(rng.uniform(0.9, 1.15)))


@dataclass(frozen=True)
class Syllable:
    onset: float  # seconds
    duration: float
    vowel: int  # index into VOWELS
    jaw: float  # how far the jaw opens (the face's jaw_drop intensity)


def plan_speech(rng: np.random.Generator, turns: list[tuple[float, float]]) -> list[Syllable]:
    """Syllables in utterances of 0.8-3 s separated by 0.2-1 s pauses, inside the speaking turns."""
    syllables = []
    for start, end in turns:
        t = start + rng.uniform(0.0, 0.4)
        while t < end - 0.3:
            stop = min(end, t + rng.uniform(0.8, 3.0))
            while t < stop - 0.1:
                d = rng.uniform(0.14, 0.28)
                syllables.append(Syllable(t, d, int(rng.integers(0, len(VOWELS))), float(rng.uniform(0.5, 1.3))))
                t += d + rng.uniform(0.0, 0.06)
            t += rng.uniform(0.2, 1.0)
    return syllables


def syllable_envelope(syllables: list[Syllable], t: np.ndarray, attr: str | None = None) -> np.ndarray:
    """Sum of the syllables' raised-cosine pulses at times t, each weighted by `attr` ("jaw") if given."""
    out = np.zeros_like(t)
    for s in syllables:
        out += (getattr(s, attr) if attr else 1.0) * bump(t, s.onset, s.duration)
    return out


def speak(
    voice: Voice,
    syllables: list[Syllable],
    valence: np.ndarray,
    arousal: np.ndarray,
    fps: float,
    n_samples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """float32 (n_samples,) at AUDIO_RATE; valence and arousal are per video frame (N,) in [-1, 1]."""
    tc = np.arange(int(np.ceil(n_samples / AUDIO_RATE * CONTROL_RATE)) + 1) / CONTROL_RATE  # control times
    tf = np.arange(len(valence)) / fps
    v, a = np.interp(tc, tf, valence), np.interp(tc, tf, arousal)
    f0 = voice.f0 * 2.0 ** (0.7 * a + 0.08 * smooth_noise(rng, len(tc), CONTROL_RATE, 1.5))  # (Tc,)
    beta = voice.tilt - 0.6 * v
    gain = voice.loudness * 10.0 ** (6.0 * a / 20.0) * syllable_envelope(syllables, tc)
    formants = np.zeros((len(tc), 3))  # (Tc, 3): the vowel of the syllable sounding at each control time
    formants[:] = VOWELS[0]
    for s in syllables:
        formants[(tc >= s.onset) & (tc < s.onset + s.duration)] = VOWELS[s.vowel]
    formants *= voice.formant_scale

    ta = np.arange(n_samples) / AUDIO_RATE
    f0_audio = np.interp(ta, tc, f0)
    phase = 2 * np.pi * np.cumsum(f0_audio) / AUDIO_RATE
    out = np.zeros(n_samples)
    n_harmonics = int(0.45 * AUDIO_RATE / f0.min())
    for k in range(1, n_harmonics + 1):
        fk = k * f0  # (Tc,)
        resonance = (1.0 / (1.0 + ((fk[:, None] - formants) / np.array(BANDWIDTHS)) ** 2)).sum(1)
        amp = gain * k ** (-beta) * (0.2 + resonance) * (fk < 0.45 * AUDIO_RATE)  # no aliasing
        if amp.max() < 1e-5:
            continue
        out += np.interp(ta, tc, amp) * np.sin(k * phase)
    noise = rng.standard_normal(n_samples) * 0.002
    return np.clip(out + noise, -1.0, 1.0).astype(np.float32)
