"""Print the requirements of PKDOT's extras, one per line, for `pip install -c constraints.txt -r FILE`.

The images install the dependencies from this list (one cached layer) and then the project itself with
`--no-deps`. `--ort gpu` swaps `onnxruntime` for `onnxruntime-gpu`: both install the same `onnxruntime` module, so
the two must never be installed together, and pip would install the CPU one for the `serve` extra otherwise.

    python docker/requirements.py serve --ort gpu > requirements.txt
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ORT_PACKAGES = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu"}


def _name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement ("uvicorn[standard]>=0.30" -> "uvicorn")."""
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: Path, extras: list[str], ort: str) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml has {sorted(optional)}")
    wanted = ORT_PACKAGES[ort]
    out: list[str] = []
    for requirement in [*project.get("dependencies", []), *(r for e in extras for r in optional[e])]:
        name = _name(requirement)
        if name in ORT_PACKAGES.values():  # keep the version specifier; constraints.txt pins the version anyway
            requirement = wanted + requirement.strip()[len(name):]
        if requirement not in out:
            out.append(requirement)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", help="comma-separated extras, e.g. serve or serve,train")
    parser.add_argument("--ort", choices=sorted(ORT_PACKAGES), default="cpu",
                        help="which ONNX Runtime distribution replaces onnxruntime (default cpu)")
    parser.add_argument("--pyproject", type=Path, default=Path(__file__).resolve().parents[1] / "pyproject.toml")
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.split(",") if e]
    sys.stdout.write("".join(f"{r}\n" for r in requirements(args.pyproject, extras, args.ort)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
