"""Export a training run as a checked model folder: ONNX graph(s), Triton configs, MODEL_CARD.md, manifest.json.

    pkdot export runs/pain-student --out models/pain-student
    pkdot export runs/pain-student --out models/pain-student-int8 --int8 --validation val.npz

The run folder's config.json, best.pt and metrics.json rebuild the model (training.export.run_folder). Real face
crops for the parity check (and int8 calibration) come from the run's face-crop cache (`--crops` to choose
another), or from a bundled public-domain photo when the run has no cache; int8 calibration uses the training
part's samples (RUN_DIR/split.json). `--int8` compares the quantised model with fp32 on the run's validation split
(rebuilt from config.json's data section), or on `--validation FILE.npz` with arrays `video` (uint8 crops
(N, T, S, S, 3) or model inputs (N, T, 3, S, S)), `target` (pain class (N,) or valence/arousal (N, 2)), optional
`privileged` and `split` (text).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from training.errors import ConfigError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="training run folder (config.json, best.pt, metrics.json)")
    p.add_argument("--out", required=True, help="model folder to write, e.g. models/pain-student")
    p.add_argument("--name", help="model name in the manifest (default: the --out folder's name)")
    p.add_argument("--version", help="model version (default: <pkdot version>+<run folder name>)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--int8", action="store_true", help="static int8 quantisation (QDQ), checked on validation")
    precision.add_argument("--fp16", action="store_true", help="float16 weights and compute, for GPUs")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--max-int8-drop", type=float, default=2.0,
                   help="refuse an int8 model whose validation metric drops more than this many points "
                        "(accuracy in percentage points, CCC x 100; default 2)")
    p.add_argument("--crops", metavar="CACHE", help="face-crop cache for the checks and int8 calibration "
                                                    "(default: the run's data.cache)")
    p.add_argument("--calibration-clips", type=int, default=64, help="int8 calibration clips (default 64)")
    p.add_argument("--validation", metavar="NPZ", help="int8: validation arrays instead of the run's validation split")
    p.add_argument("--synthetic", action="store_true",
                   help="the run was trained on synthetic data (model card and licence say so)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (after the new export passed)")


def _validation_file(path: Path):
    import numpy as np

    from training.export.evaluate import ValidationData

    if not path.is_file():
        raise ConfigError(f"--validation {path} not found")
    with np.load(path) as z:
        missing = [k for k in ("video", "target") if k not in z]
        if missing:
            raise ConfigError(f"{path} lacks array(s) {', '.join(missing)} (expected video, target[, privileged, "
                              "split])")
        arrays = {k: z[k] for k in z.files}
    split = str(arrays.pop("split", f"validation arrays {path.name}"))
    return ValidationData.from_arrays(arrays["video"], arrays["target"], arrays.get("privileged"), split=split)


def _validation_split(cfg, run_dir):
    """The run's own validation part (the split the training loop chose epochs on), as a DataLoader."""
    from torch.utils.data import DataLoader

    from training.data.build import build_datasets
    from training.errors import DatasetError
    from training.export.evaluate import ValidationData

    try:
        data = build_datasets(cfg.data, cfg.task, privileged=run_dir.role == "teacher")
    except (ConfigError, DatasetError) as exc:
        raise ConfigError(f"--int8 compares with fp32 on the run's validation split, which cannot be loaded here "
                          f"({exc}); pass --validation NPZ instead") from None
    loader = DataLoader(data.val, batch_size=16, shuffle=False, num_workers=cfg.data.workers)
    return ValidationData(lambda: iter(loader), split=f"validation part of the {run_dir.split()}")


def run(args: argparse.Namespace) -> int:
    from pkdot_contract import __version__
    from training.export.export import export_model
    from training.export.quantize import CalibrationData
    from training.export.run_folder import RunFolder, astronaut_crops, clips_from_cache

    run_dir = RunFolder.load(args.run_dir)
    out = Path(args.out)
    if run_dir.role == "teacher" and args.int8:
        raise ConfigError("--int8 is for students: a teacher's calibration also needs privileged signals, which the "
                          "face-crop cache does not hold (export_model accepts them from Python)")
    if args.synthetic:
        run_dir.data["synthetic"] = True
    spec = run_dir.crop_spec()
    cache = Path(args.crops) if args.crops else run_dir.cache_dir
    clips = None
    if cache is not None and (cache / "preprocessing.json").is_file():
        # calibration (and the parity check) on the training part's crops: never the samples it is judged on
        clips = clips_from_cache(cache, spec, run_dir.window, max_clips=args.calibration_clips,
                                 keys=run_dir.split_keys("train"))
        check_crops = clips[:, 0] if len(clips) >= 8 else clips.reshape(-1, *clips.shape[2:])[:16]
    elif args.int8:
        raise ConfigError(f"--int8 calibrates on the face-crop cache, and there is none at {cache} (--crops CACHE)")
    else:
        log.warning("no face-crop cache (%s): checking parity on crops of a reference photo", cache)
        check_crops = astronaut_crops(spec)

    cfg, model = run_dir.load_model()
    validation = None
    if args.int8:
        validation = _validation_file(Path(args.validation)) if args.validation else _validation_split(cfg, run_dir)
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    num_classes = getattr(getattr(model, "head", None), "num_classes", None)
    result = export_model(
        model, task=run_dir.task, role=run_dir.role, name=args.name or out.name,
        version=args.version or f"{__version__}+{run_dir.path.name}", out_dir=out,
        preprocessing=run_dir.preprocessing(), outputs=run_dir.outputs(num_classes), provenance=run_dir.provenance(),
        check_crops=check_crops, privileged_shape=run_dir.privileged_shape(), precision=precision, opset=args.opset,
        calibration=CalibrationData(clips) if args.int8 else None, validation=validation,
        max_int8_drop=args.max_int8_drop, overwrite=args.force,
    )
    m = result.manifest
    print(f"exported {m.name} {m.version} ({m.task} {m.role}, {m.precision}, opset {m.opset}) to {result.folder}")
    for name, g in m.graphs.items():
        ins = ", ".join(f"{t.name} {t.shape}" for t in g.inputs)
        outs = ", ".join(f"{t.name} {t.shape}" for t in g.outputs)
        errors = ", ".join(f"{k} {v:.1e}" for k, v in result.parity[name].max_abs_error.items())
        print(f"  {g.file} ({result.sizes[name] / 1e6:.2f} MB): {ins} -> {outs}")
        print(f"    ONNX Runtime vs PyTorch, max abs error: {errors} (tolerance {result.parity[name].tolerance})")
    if result.int8:
        v = result.int8["validation"]
        print(f"  int8 {v['metric']} on {v['split']}: fp32 {v['fp32']:.4f}, int8 {v['int8']:.4f} "
              f"(drop {v['drop_points']:.2f} points, limit {v['max_drop_points']:g})")
    return 0
