"""Independent, reproducible random streams: one per (seed, purpose, index...), whatever the order of generation.

Samples can then be generated in any order or in parallel processes and still come out identical for a seed.
"""

from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, purpose: str, *index: int) -> np.random.Generator:
    """A generator for one purpose ("person", "sample", ...) and index, e.g. rng_for(0, "sample", 3, 1)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(purpose.encode()), *map(int, index)]))
