"""Write a synthetic dataset in a real release layout (BioVid Part A or Aff-Wild2 VA), for tests, CI and demos.

Faces come from the public-domain astronaut photo of scikit-image, deformed by the labels; the privileged
modality (biosignals, voice) carries the labels more reliably than the face. See docs/synthetic-data.md.
"""

from __future__ import annotations

import argparse
import os
import re

from training.errors import ConfigError

# the defaults write the benchmark of configs/synthetic/ (docs/experiments.md)
BIOVID_DEFAULTS = {"subjects": 20, "samples_per_class": 3}
AFFWILD2_DEFAULTS = {"videos": 32, "seconds": 12.0}


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=("biovid", "affwild2"), help="which release layout to write")
    parser.add_argument("--out", required=True, help="output folder (created; must be empty unless --force)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same data "
                        "(default 0)")
    parser.add_argument("--subjects", type=int, default=None,
                        help=f"biovid: number of subjects (default {BIOVID_DEFAULTS['subjects']}); affwild2: the "
                        "same as --videos (one person per video)")
    parser.add_argument("--samples-per-class", type=int, default=None,
                        help=f"biovid: samples per subject and class (default {BIOVID_DEFAULTS['samples_per_class']})")
    parser.add_argument("--videos", type=int, default=None,
                        help=f"affwild2: number of videos (default {AFFWILD2_DEFAULTS['videos']}); one of them "
                        "shows two people side by side")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"affwild2: length of each video in seconds (default {AFFWILD2_DEFAULTS['seconds']:g}); "
                        "BioVid samples are always 5.5 s")
    parser.add_argument("--cropped-aligned", action="store_true",
                        help="affwild2: also write cropped_aligned/<video>/00001.jpg ... (112x112 aligned faces)")
    parser.add_argument("--no-two-person", action="store_true",
                        help="affwild2: no side-by-side video (no <video>_left/_right annotations)")
    parser.add_argument("--size", type=_size, default=(320, 240), metavar="WxH",
                        help="frame size of one person (default 320x240; the face is ~0.45 x the shorter side)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes that render in parallel; does not change the output (default: up to 2)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty --out: first deletes that layout's own entries there "
                        "(biovid: samples.csv, video/, biosignals_filtered/; affwild2: videos/, annotations/, "
                        "cropped_aligned/) and nothing else")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _reject(args: argparse.Namespace, names: tuple[str, ...], dataset: str) -> None:
    given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) not in (None, False)]
    if given:
        raise ConfigError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to {dataset}")


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {args.workers}")
    progress = not args.no_progress
    if args.dataset == "biovid":
        from training.data.synth.biovid import write_biovid

        _reject(args, ("videos", "seconds", "cropped_aligned", "no_two_person"), "biovid")
        summary = write_biovid(
            args.out,
            subjects=BIOVID_DEFAULTS["subjects"] if args.subjects is None else args.subjects,
            samples_per_class=(BIOVID_DEFAULTS["samples_per_class"] if args.samples_per_class is None
                               else args.samples_per_class),
            seed=args.seed, size=args.size, force=args.force, workers=args.workers, progress=progress,
        )
    else:
        from training.data.synth.affwild2 import write_affwild2

        _reject(args, ("samples_per_class",), "affwild2")
        if args.subjects is not None and args.videos is not None and args.subjects != args.videos:
            raise ConfigError(f"affwild2: --subjects {args.subjects} and --videos {args.videos} disagree "
                              "(there is one person per video); give one of them")
        videos = next((v for v in (args.videos, args.subjects) if v is not None), AFFWILD2_DEFAULTS["videos"])
        summary = write_affwild2(
            args.out, videos=videos,
            seconds=AFFWILD2_DEFAULTS["seconds"] if args.seconds is None else args.seconds,
            seed=args.seed, size=args.size, cropped_aligned=args.cropped_aligned,
            two_person=not args.no_two_person, force=args.force, workers=args.workers, progress=progress,
        )
    print(f"pkdot synth {summary.line()}")
    return 0
