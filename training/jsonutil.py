"""JSON for results and manifests that hold numpy values and paths (torch-free)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_jsonable(x: object) -> object:
    """`default=` for json.dumps: numpy scalars and arrays as Python values, paths as strings."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")
