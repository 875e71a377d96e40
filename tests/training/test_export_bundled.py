"""Every model folder bundled in `models/` passes its check and runs in ONNX Runtime as its manifest describes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.export import verify_model_folder
from training.export.parity import ort_session

MODELS = Path(__file__).parents[2] / "models"
BUNDLED = sorted(p.parent for p in MODELS.glob("*/manifest.json"))


@pytest.mark.skipif(not BUNDLED, reason="no bundled model in models/ yet (they are made by `make models`)")
@pytest.mark.parametrize("folder", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_model_runs_as_its_manifest_says(folder: Path) -> None:
    manifest = verify_model_folder(folder)  # sha256, ONNX interface and Triton configs against the manifest
    rng = np.random.default_rng(0)
    for graph in manifest.graphs.values():
        session = ort_session(folder / graph.file)
        for batch in (1, 3):
            feed = {t.name: rng.standard_normal([batch if d == "batch" else d for d in t.shape]).astype(t.dtype)
                    for t in graph.inputs}
            outputs = dict(zip([t.name for t in graph.outputs], session.run([t.name for t in graph.outputs], feed),
                               strict=True))
            for t in graph.outputs:
                assert list(outputs[t.name].shape) == [batch if d == "batch" else d for d in t.shape]
                assert outputs[t.name].dtype == np.dtype(t.dtype) and np.isfinite(outputs[t.name]).all()
            if "probabilities" in outputs:
                np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, atol=1e-4)
                assert outputs["probabilities"].shape[-1] == len(manifest.outputs.labels)
            if "va" in outputs:
                assert np.abs(outputs["va"]).max() <= 1.0
    size = sum((folder / rel).stat().st_size for rel in manifest.files)
    assert size < 40e6, f"{folder.name} is {size / 1e6:.1f} MB: too large to commit"
