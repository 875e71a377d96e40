"""Synthetic datasets in the real release layouts (BioVid Heat Pain Part A, Aff-Wild2 VA).

    write_biovid(out, subjects=20, samples_per_class=3, seed=0)  -> SynthSummary
    write_affwild2(out, videos=32, seconds=12.0, seed=0)          -> SynthSummary

The generative model (docs/synthetic-data.md): a face (scikit-image's public-domain astronaut photo) moves, is lit
and is deformed by a few action units driven by the label through person and sample noise, while the privileged
modality (biosignals for pain, voice for affect) carries the label more reliably. Same seed, same data. The
defaults write the benchmark that configs/synthetic/ train on.
"""

from training.data.synth.affwild2 import write_affwild2
from training.data.synth.biovid import write_biovid
from training.data.synth.output import SynthSummary

__all__ = ["SynthSummary", "write_affwild2", "write_biovid"]
