"""The affect task's generative model: valence and arousal drive a noisy facial expression and a clear voice.

Per person and video, with frame times t:

    v(t) = tanh(mu_v + sigma_v * x_v(t)),  a(t) = tanh(mu_a + sigma_a * x_a(t))   x: smooth noise (< 0.15 Hz)
    face:  g = e_s * z,  smile = r + 1.6 g v(t),  brow_raise = 1.3 g a(t),  eye_widen = 1.0 g a(t),
           brow_lower = 1.0 g max(-v(t), 0),  jaw_drop = the voice's syllables (lip sync), blinks,
           + distractors unrelated to the labels: polite smiles and frowns, brow flashes on stressed syllables
    voice: pitch and loudness from a(t), spectral tilt from v(t) (voice.py)

e_s is the person's expressiveness: every third video's people are reserved, e_s ~ U(0.25, 0.45) (their faces show
less of what their voices do), the others have e_s ~ U(0.4, 1.1). z = exp(N(0, 0.25)) is the track's
expression noise and r ~ N(0, 0.2) the resting smile; none of them reaches the voice, so the face is learnable but
noisier than the voice. See docs/synthetic-data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.synth.face import ACTION_UNITS, AU_INDEX
from training.data.synth.scene import Person, blinks, bump, make_person, smooth_noise
from training.data.synth.voice import Syllable, Voice, make_voice, syllable_envelope


@dataclass
class AffectPerson:
    person: Person
    voice: Voice
    expressiveness: float  # e_s
    rest_smile: float  # r


EXPRESSIVENESS = (0.4, 1.1)
RESERVED_EXPRESSIVENESS = (0.25, 0.45)  # reserved people: their faces show less of what their voices do


def make_affect_person(rng: np.random.Generator, size: tuple[int, int], reserved: bool = False) -> AffectPerson:
    voice = make_voice(rng)  # drawn before the appearance: the voice does not depend on the frame size
    expressiveness = float(rng.uniform(*(RESERVED_EXPRESSIVENESS if reserved else EXPRESSIVENESS)))
    rest_smile = float(rng.normal(0.0, 0.2))
    return AffectPerson(make_person(rng, size), voice, expressiveness, rest_smile)


def affect_labels(rng: np.random.Generator, n: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Valence and arousal per frame, (n,) each, in (-1, 1)."""
    v = np.tanh(rng.uniform(-0.5, 0.5) + rng.uniform(0.3, 0.7) * smooth_noise(rng, n, fps, 0.15))
    a = np.tanh(rng.uniform(-0.3, 0.5) + rng.uniform(0.3, 0.7) * smooth_noise(rng, n, fps, 0.15))
    return v, a


def affect_expression(
    who: AffectPerson,
    valence: np.ndarray,
    arousal: np.ndarray,
    syllables: list[Syllable],
    fps: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """AU intensities (n, n_AU) for one person's track."""
    n = len(valence)
    t = np.arange(n) / fps
    g = who.expressiveness * float(np.exp(rng.normal(0.0, 0.25)))  # e_s z
    aus = np.zeros((n, len(ACTION_UNITS)))
    aus[:, AU_INDEX["smile"]] = who.rest_smile + 1.6 * g * valence
    aus[:, AU_INDEX["brow_raise"]] = 1.3 * g * arousal
    aus[:, AU_INDEX["eye_widen"]] = 1.0 * g * arousal
    aus[:, AU_INDEX["brow_lower"]] = 1.0 * g * np.maximum(-valence, 0.0)
    span = n / fps
    for _ in range(rng.poisson(span / 8.0)):  # expressions unrelated to the labels: polite smiles, frowns
        au = AU_INDEX["smile"] if rng.random() < 0.6 else AU_INDEX["brow_lower"]
        aus[:, au] += rng.uniform(-0.3, 0.8) * bump(t, rng.uniform(-1.0, span), rng.uniform(1.0, 3.0))
    stressed = [s for s in syllables if rng.random() < 0.12]  # brow flashes that accent speech
    aus[:, AU_INDEX["brow_raise"]] += rng.uniform(0.3, 0.7) * syllable_envelope(stressed, t)
    aus[:, AU_INDEX["jaw_drop"]] = syllable_envelope(syllables, t, "jaw")
    aus[:, AU_INDEX["blink"]] = blinks(rng, n, fps)
    return aus
