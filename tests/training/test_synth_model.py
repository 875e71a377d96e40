"""The generative model behind `pkdot synth`, without writing files: the privileged modality follows the labels."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.synth.affect import affect_labels
from training.data.synth.biosignals import BIO_RATE, make_physiology, pain_biosignals, scr
from training.data.synth.face import ACTION_UNITS, DeformableFace, template_rgba
from training.data.synth.pain import PAIN_INTENSITY
from training.data.synth.voice import AUDIO_RATE, Voice, plan_speech, speak


def test_privileged_biosignals_grow_with_the_pain_level():
    # phasic GSR amplitude and EMG burst level, averaged over 40 subjects each: strictly increasing BL1 -> PA4
    t = np.arange(2816) / BIO_RATE
    gsr_amp, emg_rms = [], []
    for level in PAIN_INTENSITY:
        rng = np.random.default_rng(0)
        g, e = [], []
        for _ in range(40):
            sig = pain_biosignals(make_physiology(rng), level, 2816, rng)
            g.append(sig["gsr"][t > 1.0].max() - sig["gsr"][t < 1.0].mean())
            e.append(np.sqrt(np.mean(sig["emg_trapezius"][(t > 2) & (t < 5)] ** 2)))
        gsr_amp.append(np.mean(g))
        emg_rms.append(np.mean(e))
    assert np.all(np.diff(gsr_amp) > 0.05), gsr_amp
    assert np.all(np.diff(emg_rms) > 0.3), emg_rms


def test_heart_rate_rises_with_pain():
    t = np.arange(2816) / BIO_RATE

    def beats(level: float) -> float:
        rng = np.random.default_rng(1)
        phys = make_physiology(rng)
        counts = []
        for _ in range(20):
            ecg = pain_biosignals(phys, level, 2816, rng)["ecg"]
            peaks = (ecg[1:-1] > 0.5 * ecg.max()) & (ecg[1:-1] >= ecg[:-2]) & (ecg[1:-1] > ecg[2:])
            counts.append(peaks[t[1:-1] > 3.0].sum())
        return float(np.mean(counts))

    assert beats(1.0) > beats(0.0)


def test_skin_conductance_response_has_unit_peak_after_its_onset():
    t = np.arange(0, 10, 1 / BIO_RATE)
    r = scr(t, onset=1.0)
    assert r.max() == pytest.approx(1.0, abs=1e-3)
    assert np.all(r[t <= 1.0] == 0.0) and 1.5 < t[np.argmax(r)] < 3.5


def _pitch_and_level(audio: np.ndarray) -> tuple[float, float, float]:
    """Median f0 (autocorrelation), RMS and share of energy above 1.5 kHz, over voiced 40 ms frames."""
    win, f0s, rms, high = 640, [], [], []
    freqs = np.fft.rfftfreq(win, 1 / AUDIO_RATE)
    for i in range(0, len(audio) - win, 320):
        x = audio[i : i + win] * np.hanning(win)
        if np.sqrt(np.mean(x**2)) < 0.01:
            continue
        ac = np.correlate(x, x, "full")[win - 1 :]
        lag = 40 + int(np.argmax(ac[40:270]))
        f0s.append(AUDIO_RATE / lag)
        rms.append(np.sqrt(np.mean(x**2)))
        spec = np.abs(np.fft.rfft(x)) ** 2
        high.append(spec[freqs > 1500].sum() / spec.sum())
    return float(np.median(f0s)), float(np.mean(rms)), float(np.mean(high))


def test_voice_pitch_and_loudness_follow_arousal_and_brightness_follows_valence():
    voice = Voice(f0=150.0, tilt=1.3, loudness=0.07, formant_scale=1.0)
    fps, n = 30, 90
    syllables = plan_speech(np.random.default_rng(0), [(0.0, 3.0)])

    def say(valence: float, arousal: float) -> tuple[float, float, float]:
        audio = speak(voice, syllables, np.full(n, valence), np.full(n, arousal), fps, 3 * AUDIO_RATE,
                      np.random.default_rng(1))
        assert audio.dtype == np.float32 and len(audio) == 3 * AUDIO_RATE and np.abs(audio).max() <= 1.0
        return _pitch_and_level(audio)

    calm, excited = say(0.0, -0.8), say(0.0, 0.8)
    assert excited[0] > 1.6 * calm[0]  # f0 * 2^(0.7 * 1.6) = 2.2x
    assert excited[1] > 1.5 * calm[1]  # +-6 dB
    sad, happy = say(-0.8, 0.0), say(0.8, 0.0)
    assert happy[2] > 2 * sad[2]  # flatter spectral tilt


def test_affect_labels_are_smooth_and_in_range():
    v, a = affect_labels(np.random.default_rng(0), 900, 30)
    assert v.shape == a.shape == (900,)
    assert np.all(np.abs(v) < 1) and np.all(np.abs(a) < 1)
    assert np.abs(np.diff(v)).max() < 0.05 and np.abs(np.diff(a)).max() < 0.05  # 30 fps: no jumps


@pytest.mark.parametrize("au", ACTION_UNITS)
def test_every_action_unit_moves_the_face_and_only_the_face(au: str):
    face = DeformableFace(template_rgba(), flip=False, id_field=np.zeros((*template_rgba().shape[:2], 2), np.float32))
    neutral = face.render(np.zeros(len(ACTION_UNITS)))
    assert np.array_equal(neutral, template_rgba())  # no identity warp, no expression: the template itself
    w = np.zeros(len(ACTION_UNITS))
    w[ACTION_UNITS.index(au)] = 1.0
    moved = face.render(w).astype(int)
    diff = np.abs(moved - neutral).max(axis=2)
    assert diff.max() > 20  # visible
    ys, xs = np.nonzero(diff > 10)
    assert ys.min() > 60 and ys.max() < 200  # from the brows to the chin, not the hair
    assert xs.min() > 40 and xs.max() < 150
