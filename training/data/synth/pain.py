"""The pain task's generative model: a pain level drives a weak facial expression and strong biosignals.

For a sample of level p in {0..4} (BL1, PA1..PA4), intensity I = p / 4, window time t in seconds:

    face:  w_a(t) = r_a + 1.3 * e_s * I * z * m_a * env(t)            for the pain AUs a (brow_lower, eye_narrow,
                                                                       nose_wrinkle, mouth_stretch)
           + distractors (grimaces, smiles, jaw movements unrelated to p) + blinks
    body:  GSR, ECG, EMG from biosignals.py with intensity I

e_s ~ Beta(1.1, 1.6) is the subject's expressiveness (many subjects barely show pain), m_a ~ U(0.3, 1.3) the
subject's own mix of AUs, r_a ~ N(0, 0.12) a resting expression, z = exp(N(0, 0.3)) the sample's variation and
env a raised-cosine pulse with onset U(0.8, 2.0) s and duration U(2.0, 3.5) s. See docs/synthetic-data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.synth.biosignals import Physiology, make_physiology
from training.data.synth.face import ACTION_UNITS, AU_INDEX
from training.data.synth.scene import Person, blinks, bump, make_person

CLASS_NAMES = ("BL1", "PA1", "PA2", "PA3", "PA4")
PAIN_INTENSITY = (0.0, 0.25, 0.5, 0.75, 1.0)  # I per class id
PAIN_AUS = tuple(AU_INDEX[a] for a in ("brow_lower", "eye_narrow", "nose_wrinkle", "mouth_stretch"))


@dataclass
class PainSubject:
    person: Person
    physiology: Physiology
    expressiveness: float  # e_s in [0, 1]
    style: np.ndarray  # (4,) m_a, weight of each pain AU
    rest: np.ndarray  # (n_AU,) r_a, resting expression


def make_pain_subject(rng: np.random.Generator, size: tuple[int, int]) -> PainSubject:
    physiology = make_physiology(rng)  # drawn first: the biosignals do not depend on the frame size
    expressiveness = float(rng.beta(1.1, 1.6))
    style = rng.uniform(0.3, 1.3, len(PAIN_AUS))
    rest = np.zeros(len(ACTION_UNITS))
    rest[list(PAIN_AUS)] = rng.normal(0.0, 0.12, len(PAIN_AUS))
    rest[AU_INDEX["smile"]] = rng.normal(0.0, 0.2)
    return PainSubject(make_person(rng, size), physiology, expressiveness, style, rest)


def pain_expression(subject: PainSubject, intensity: float, n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """AU intensities (n, n_AU) of one sample."""
    t = np.arange(n) / fps
    aus = np.tile(subject.rest, (n, 1))
    amplitude = 1.3 * subject.expressiveness * intensity * np.exp(rng.normal(0.0, 0.3))
    env = bump(t, rng.uniform(0.8, 2.0), rng.uniform(2.0, 3.5))
    aus[:, PAIN_AUS] += amplitude * subject.style[None, :] * env[:, None]
    span = n / fps
    if rng.random() < 0.3:  # a grimace unrelated to the stimulus (discomfort, concentration)
        which = [a for a in PAIN_AUS if rng.random() < 0.6] or [PAIN_AUS[0]]
        aus[:, which] += rng.uniform(0.2, 1.0) * bump(t, rng.uniform(-0.5, span - 0.5), rng.uniform(0.8, 2.0))[:, None]
    if rng.random() < 0.3:  # a smile or a smirk
        aus[:, AU_INDEX["smile"]] += rng.uniform(-0.4, 0.9) * bump(t, rng.uniform(-0.5, span - 0.5), rng.uniform(1, 3))
    if rng.random() < 0.2:  # lips parting, swallowing
        aus[:, AU_INDEX["jaw_drop"]] += rng.uniform(0.1, 0.5) * bump(t, rng.uniform(0, span - 1), rng.uniform(0.5, 1.5))
    aus[:, AU_INDEX["blink"]] += blinks(rng, n, fps)
    return aus
