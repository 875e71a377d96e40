"""The bundled models in models/ on held-out synthetic data (seed 7), through a real `pkdot serve` process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not any(MODELS.glob("*/manifest.json")),
                                 reason=f"no bundled model folder under {MODELS} yet")]


@pytest.fixture(scope="module")
def figures() -> dict:
    pytest.importorskip("onnx", reason="verifying the model folders needs onnx (install the train extra)")
    from training.export.heldout import evaluate, summary

    result = evaluate(MODELS, progress=False)
    print("\n" + summary(result) + "\n" + json.dumps(result, indent=2))
    return result


@pytest.mark.parametrize("path", ["student_rest", "student_ws"])
def test_pain_student_above_chance(figures: dict, path: str) -> None:
    r = figures["pain"][path]
    assert r["clips"] == figures["dataset"]["biovid"]["clips"], r
    assert r["spearman"] >= 0.3, f"pain {path}: {r}"
    assert r["auc_bl1_pa4"] >= 0.75, f"pain {path}: {r}"


def test_pain_teacher_above_student(figures: dict) -> None:
    pain = figures["pain"]
    teacher, students = pain["teacher"], [pain["student_rest"], pain["student_ws"]]
    assert all(teacher["spearman"] > s["spearman"] for s in students), pain
    assert all(teacher["auc_bl1_pa4"] >= s["auc_bl1_pa4"] for s in students), pain  # both may separate fully


def test_affect_student_above_chance(figures: dict) -> None:
    r = figures["affect"]["student_ws"]
    assert r["frames"] >= 100, r
    assert r["ccc_mean"] >= 0.25, f"affect student: {r}"


def test_affect_teacher_above_student(figures: dict) -> None:
    affect = figures["affect"]
    teacher, student = affect["teacher"], affect["student_ws_on_teacher_targets"]
    assert teacher["frames"] >= 30, teacher
    assert teacher["ccc_mean"] > student["ccc_mean"], affect
    assert teacher["ccc_mean"] > affect["student_ws"]["ccc_mean"], affect


def test_cards_written_and_folders_still_verify(figures: dict, tmp_path: Path) -> None:
    from training.export.folder import verify_model_folder
    from training.export.heldout import SECTION, write_cards

    root = tmp_path / "models"
    for folder in sorted(p.parent for p in MODELS.glob("*/manifest.json")):
        shutil.copytree(folder, root / folder.name)
    written = write_cards(root, figures)
    assert set(written) == {"pain-student", "pain-teacher", "affect-student", "affect-teacher"}
    write_cards(root, figures)  # a second run replaces the section
    for name in written:
        card = (root / name / "MODEL_CARD.md").read_text()
        assert card.count(SECTION) == 1, card
        assert "seed 7" in card
        verify_model_folder(root / name)


def test_missing_models_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.export.heldout import main

    assert main([str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "no pain-student, affect-student" in capsys.readouterr().err
