"""The pain task's generative model: one latent response per sample drives both the face and the biosignals.

For a sample of stimulus level p in {0..4} (BL1, PA1..PA4), intensity I = p / 4, window time t in seconds:

    response:  r = I * kappa_s * exp(N(0, 0.1))                      what the subject feels (not observed)
    face:      w_a(t) = r_a + 4.0 * e_s * m_a * r * z * env(t)        for the pain AUs a (brow_lower, eye_narrow,
                                                                      nose_wrinkle, mouth_stretch, jaw_drop)
               + rarer, smaller distractors (grimaces, smiles, lips parting) + blinks
    body:      GSR, ECG, EMG from biosignals.py driven by r (less noise than the face)
    label:     the stimulus p, as in BioVid (labels are temperatures, not felt pain)

kappa_s ~ U(0.8, 1.2) is the subject's sensitivity (shared by face and body), e_s the subject's expressiveness
(a third of the subjects are stoic, e_s ~ U(0, 0.08): their faces barely move while their bodies respond; the
others have e_s ~ U(0.6, 1.3)) and m_a ~ U(0.7, 1.3) their own mix of AUs (face only), r_a ~ N(0, 0.08) a resting
expression, z = exp(N(0, 0.4)) the sample's expression noise (face only) and env a raised-cosine pulse with onset
U(0.8, 1.6) s and duration U(2.5, 3.5) s. The face shows r through subject and sample noise the biosignals do not
have, so the face cue is learnable but weaker, and a teacher that reads the biosignals is organised by r: the
per-sample structure that distillation can transfer. See docs/synthetic-data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.synth.biosignals import Physiology, make_physiology
from training.data.synth.face import ACTION_UNITS, AU_INDEX
from training.data.synth.scene import Person, blinks, bump, make_person
from training.data.synth.seeds import rng_for

CLASS_NAMES = ("BL1", "PA1", "PA2", "PA3", "PA4")
PAIN_INTENSITY = (0.0, 0.25, 0.5, 0.75, 1.0)  # I per class id
PAIN_AUS = tuple(AU_INDEX[a] for a in ("brow_lower", "eye_narrow", "nose_wrinkle", "mouth_stretch", "jaw_drop"))
FACE_GAIN = 4.0  # AU intensity at r = 1 for a subject of average expressiveness and style
# Facial expressiveness differs widely between people: a share of BioVid's subjects show hardly any facial response
# to heat pain at all, while their bodies respond. Every STOIC_EVERY-th subject is stoic (from an offset drawn per
# dataset), so every dataset and every block of consecutive subjects has the same share.
STOIC_EVERY = 3
STOIC_EXPRESSIVENESS = (0.0, 0.08)  # e_s ~ U(0, 0.08): the face barely shows the response
EXPRESSIVENESS = (0.6, 1.3)  # e_s ~ U(0.6, 1.3) for everyone else
# the jaw opens less than the other AUs move: its field is the largest (4 px at intensity 1)
AU_SCALE = np.array([1.0, 1.0, 1.0, 1.0, 0.35])


@dataclass
class PainSubject:
    person: Person
    physiology: Physiology
    sensitivity: float  # kappa_s: how strongly this subject responds to heat (face and body alike)
    expressiveness: float  # e_s: how much of the response reaches the face
    style: np.ndarray  # (len(PAIN_AUS),) m_a, weight of each pain AU
    rest: np.ndarray  # (n_AU,) r_a, resting expression


def is_stoic(index: int, seed: int) -> bool:
    """Whether person `index` (a BioVid subject, an Aff-Wild2 video) of the dataset with `seed` barely shows what
    they feel in the face: every STOIC_EVERY-th, from an offset drawn per dataset."""
    return (index + int(rng_for(seed, "stoic-offset").integers(STOIC_EVERY))) % STOIC_EVERY == 0


def make_pain_subject(rng: np.random.Generator, size: tuple[int, int], stoic: bool = False) -> PainSubject:
    physiology = make_physiology(rng)  # drawn first: the biosignals do not depend on the frame size
    sensitivity = float(rng.uniform(0.8, 1.2))  # narrow: BioVid calibrates each person's temperatures
    expressiveness = float(rng.uniform(*(STOIC_EXPRESSIVENESS if stoic else EXPRESSIVENESS)))
    style = rng.uniform(0.7, 1.3, len(PAIN_AUS))
    rest = np.zeros(len(ACTION_UNITS))
    rest[list(PAIN_AUS)] = rng.normal(0.0, 0.08, len(PAIN_AUS))
    rest[AU_INDEX["smile"]] = rng.normal(0.0, 0.15)
    return PainSubject(make_person(rng, size), physiology, sensitivity, expressiveness, style, rest)


def pain_response(subject: PainSubject, intensity: float, rng: np.random.Generator) -> float:
    """The sample's latent response r = I * kappa_s * exp(N(0, 0.1)); 0 at baseline."""
    return float(intensity * subject.sensitivity * np.exp(rng.normal(0.0, 0.1)))


def pain_expression(subject: PainSubject, response: float, n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """AU intensities (n, n_AU) of one sample whose latent response is `response`."""
    t = np.arange(n) / fps
    aus = np.tile(subject.rest, (n, 1))
    amplitude = FACE_GAIN * subject.expressiveness * response * np.exp(rng.normal(0.0, 0.4))
    env = bump(t, rng.uniform(0.8, 1.6), rng.uniform(2.5, 3.5))
    aus[:, PAIN_AUS] += amplitude * (subject.style * AU_SCALE)[None, :] * env[:, None]
    span = n / fps
    if rng.random() < 0.15:  # a grimace unrelated to the stimulus (discomfort, concentration)
        which = [a for a in PAIN_AUS[:4] if rng.random() < 0.5] or [PAIN_AUS[0]]
        aus[:, which] += rng.uniform(0.1, 0.5) * bump(t, rng.uniform(-0.5, span - 0.5), rng.uniform(0.8, 2.0))[:, None]
    if rng.random() < 0.3:  # a smile or a smirk
        aus[:, AU_INDEX["smile"]] += rng.uniform(-0.4, 0.9) * bump(t, rng.uniform(-0.5, span - 0.5), rng.uniform(1, 3))
    if rng.random() < 0.15:  # lips parting, swallowing
        aus[:, AU_INDEX["jaw_drop"]] += rng.uniform(0.05, 0.25) * bump(t, rng.uniform(0, span - 1),
                                                                        rng.uniform(0.5, 1.5))
    aus[:, AU_INDEX["blink"]] += blinks(rng, n, fps)
    return aus
