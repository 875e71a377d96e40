"""Fail an image build unless its Python environment is what the image promises.

    python docker/check_install.py --ort gpu              # GPU service: onnxruntime-gpu only, CUDA provider, no torch
    python docker/check_install.py --ort cpu              # CPU service
    python docker/check_install.py --ort cpu --torch      # training image: torch as well

`onnxruntime` and `onnxruntime-gpu` install the same `onnxruntime` module: with both installed, whichever was
installed last silently wins, so exactly one of them must be there. The service must never pull in torch.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

ORT_PACKAGES = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu"}


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def problems(ort: str, torch: bool) -> list[str]:
    out = []
    present = {name: v for name in ORT_PACKAGES.values() if (v := installed(name))}
    if list(present) != [ORT_PACKAGES[ort]]:
        out.append(f"expected {ORT_PACKAGES[ort]} alone of {sorted(ORT_PACKAGES.values())}, found {present or 'none'}")
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch != torch:
        out.append("torch is installed but must not be" if has_torch else "torch is missing")
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if ort == "gpu" and "CUDAExecutionProvider" not in providers:
        out.append(f"onnxruntime-gpu lists no CUDAExecutionProvider: {providers}")
    import service.app  # noqa: F401  (imports cv2, mediapipe, av: fails here when a system library is missing)
    from pkdot_contract.preprocessing.face import FaceDetector

    with FaceDetector():  # MediaPipe loads its bundled model and its graph runtime
        pass
    pkdot = Path(sys.executable).parent / "pkdot"
    cli = subprocess.run([str(pkdot), "serve", "--help"], capture_output=True, text=True)
    if cli.returncode:  # the image's command: every subcommand module must import
        out.append(f"`pkdot serve --help` failed: {cli.stderr.strip()[-1000:]}")
    pip_check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    if pip_check.returncode:
        out.append(f"pip check: {pip_check.stdout.strip()} {pip_check.stderr.strip()}")
    print(f"check_install: {sys.version.split()[0]}, {', '.join(f'{k} {v}' for k, v in present.items())}, "
          f"providers {providers}, torch {'yes' if has_torch else 'no'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ort", choices=sorted(ORT_PACKAGES), required=True)
    parser.add_argument("--torch", action="store_true", help="torch must be installed (training image)")
    args = parser.parse_args(argv)
    found = problems(args.ort, args.torch)
    for p in found:
        print(f"check_install: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
