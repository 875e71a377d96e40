"""Write models/README.md: one row per exported model folder, from its manifest (python -m training.export.catalog)."""

from __future__ import annotations

import sys
from pathlib import Path

from pkdot_contract.manifest import load_manifest


def _metric(manifest) -> str:
    metrics = (manifest.provenance.get("metrics") or {}).get("test") or {}
    key = "accuracy" if manifest.task == "pain" else "ccc_mean"
    return f"{key} {metrics[key]:.3f}" if key in metrics else "—"


def catalog(models_dir: Path) -> str:
    lines = ["# Bundled models", "",
             "Made by `make models` (`scripts/make-models.sh`): synthetic datasets (`pkdot synth`) → face crops → "
             "teacher → PKDOT student → `pkdot export`. Trained on **synthetic** data: they demonstrate the "
             "pipeline, not clinical accuracy. Each folder is a Triton model repository entry with `manifest.json` "
             "(the contract the service reads) and `MODEL_CARD.md`.", "",
             "| model | task | role | graphs and inputs | size | test metric (held-out subjects) |",
             "|---|---|---|---|---|---|"]
    for folder in sorted(p.parent for p in models_dir.glob("*/manifest.json")):
        m = load_manifest(folder)
        inputs = "; ".join(f"{g}: " + ", ".join(f"{t.name} {t.shape}" for t in spec.inputs)
                           for g, spec in m.graphs.items())
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
        lines.append(f"| [{m.name}]({folder.name}/MODEL_CARD.md) | {m.task} | {m.role} | {inputs} | {size:.1f} MB "
                     f"| {_metric(m)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    models_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "models")
    (models_dir / "README.md").write_text(catalog(models_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
