"""The project's own contracts: the CLI, configs, the README, and the torch-free service (import boundaries:
tests/test_architecture.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pkdot.cli import COMMANDS, main
from service.core.config import Settings
from training.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_has_help(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    listing = capsys.readouterr().out
    for name in COMMANDS:
        assert name in listing
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0 and "usage: pkdot " + name in capsys.readouterr().out


def test_cli_and_service_import_without_torch() -> None:
    code = ("import sys, pkdot.cli, service.app; pkdot.cli.build_parser(); "
            "bad = [m for m in ('torch', 'training.models') if m in sys.modules]; "
            "assert not bad, bad; import service.api.predict")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.toml")), ids=lambda p: p.stem)
def test_config_files_load(path: Path) -> None:
    for kind in ("teacher", "student"):
        cfg = load_config(path, [f"kind={kind!r}", "teacher_run='runs/x'"])
        assert cfg.task in ("pain", "affect") and cfg.models.get(kind) is not None


def test_readme_documents_every_setting_and_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"PKDOT_{name.upper()}" not in readme]
    assert not missing, f"README lacks {missing}"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "bash scripts/serve.sh" in quick and "bash scripts/test.sh" in quick and "docker compose up" in quick


def test_relative_links_in_the_docs_resolve() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "models" / "README.md"]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
