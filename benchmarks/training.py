"""Training: wall time of the synthetic pipeline (synth -> prepare -> teacher -> T-Net -> distill -> export) on the
machine's cores.

The bundled models are made by `scripts/make-models.sh` (`make models`), which is not re-run here (15-25 minutes):
its recorded output (`time bash scripts/make-models.sh > LOG 2>&1`, given with `--training-log`) is read instead.
From it: the total wall / user / sys time of `time`, the seconds `pkdot synth` and `pkdot prepare` print, and per
training run its epochs and the time between its first and last epoch lines (plus one mean epoch), and the
exports' times between log timestamps. `make models` has no T-Net step (the bundled students are PKDOT
StreamingStudents, which do not use one), so the full mode trains the pain T-Net once here (`pkdot train-tnet`,
the synthetic config, against the bundled teacher's run) and reports its wall time as measured.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from benchmarks.common import ROOT, BenchContext, load_average, rel

NAME = "training"
DEFAULT_LOG = Path("/tmp/make-models.log")
TS = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


def _ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _clock(text: str) -> float:
    m = re.match(r"(\d+)m([\d.]+)s", text)
    return 60 * int(m.group(1)) + float(m.group(2)) if m else float("nan")


def parse_log(text: str) -> dict:
    """Stage times out of the output of `time bash scripts/make-models.sh`."""
    text = text.replace("\r", "\n")  # progress bars
    out: dict = {"synth": {}, "prepare": {}, "runs": [], "exports": []}
    for m in re.finditer(r"pkdot synth (\w+):.*\(([\d.]+) s\)", text):
        out["synth"][m.group(1)] = float(m.group(2))
    for m in re.finditer(r"face-crop cache: (\S+).*?\ntime: ([\d.]+) s", text, re.S):
        out["prepare"][Path(m.group(1)).name] = float(m.group(2))
    epochs: list[float] = []
    last_end = None
    for line in text.splitlines():
        m = re.match(TS + r" INFO training\.engine: epoch (\d+)/(\d+)", line)
        if m:
            epochs.append(_ts(m.group(1)))
            continue
        m = re.match(r"run folder: (\S+)", line)
        if m and epochs:
            span = epochs[-1] - epochs[0]
            mean = span / (len(epochs) - 1) if len(epochs) > 1 else float("nan")
            out["runs"].append({"run": Path(m.group(1)).name, "epochs": len(epochs),
                                "seconds_first_to_last_epoch_plus_one": round(span + mean, 1),
                                "mean_epoch_s": round(mean, 2)})
            last_end, epochs = epochs[-1], []
            continue
        m = re.match(TS + r" INFO training\.export\.export: exported (\S+)", line)
        if m:
            t = _ts(m.group(1))
            out["exports"].append({"model": m.group(2), "seconds_since_previous_log_line":
                                   round(t - last_end, 1) if last_end else None})
            last_end = t
    for key in ("real", "user", "sys"):
        m = re.search(rf"^{key}\s+(\S+)$", text, re.M)
        if m:
            out[f"{key}_s"] = round(_clock(m.group(1)), 1)
    return out


def measure_tnet(ctx: BenchContext) -> dict:
    teacher = ctx.runs_dir / "pain-teacher"
    if not (teacher / "best.pt").is_file() or not (ROOT / "data" / "cache" / "biovid-synthetic").is_dir():
        return {"skipped": f"needs the pain teacher's run ({teacher}) and the synthetic BioVid data (`make models`)"}
    out = ctx.cache_dir / "tnet-pain"
    cmd = [sys.executable, "-m", "pkdot", "train-tnet", "--config", "configs/synthetic/pain.toml",
           "--teacher", str(teacher), "--out", str(out), "--no-progress"]
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    load = load_average()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    epochs = len(re.findall(r"training\.engine: epoch \d+/", proc.stderr + proc.stdout))
    shown = [a.replace(f"{ROOT}/", "") for a in cmd[3:]]  # paths as a user in the repository would type them
    return {"command": " ".join(["pkdot", *shown]), "wall_s": round(wall, 1), "epochs": epochs,
            "exit_code": proc.returncode, "load_average_before": load}


def run(ctx: BenchContext) -> dict:
    path = ctx.training_log or DEFAULT_LOG
    result: dict = {"name": NAME, "targets": [], "log": rel(path)}
    if path.is_file():
        result["make_models"] = parse_log(path.read_text(errors="replace"))
        result["make_models"]["command"] = "time bash scripts/make-models.sh"
    else:
        result["make_models"] = None
        result["note"] = (f"no make-models log at {path}: run `time bash scripts/make-models.sh > {path} 2>&1` "
                          "(or pass --training-log)")
    result["tnet"] = None if ctx.quick else measure_tnet(ctx)
    return result


def table(result: dict) -> list[str]:
    m = result.get("make_models")
    if not m:
        return [result.get("note", "no training log")]
    lines = [f"make models (read from {result['log']}): real {m.get('real_s')} s, user {m.get('user_s')} s, "
             f"sys {m.get('sys_s')} s",
             "  synth: " + ", ".join(f"{k} {v} s" for k, v in m["synth"].items())
             + "; prepare: " + ", ".join(f"{k} {v} s" for k, v in m["prepare"].items())]
    for r in m["runs"]:
        lines.append(f"  {r['run']}: {r['epochs']} epochs, ~{r['seconds_first_to_last_epoch_plus_one']} s "
                     f"({r['mean_epoch_s']} s/epoch)")
    lines.append("  exports: " + ", ".join(f"{e['model']} {e['seconds_since_previous_log_line']} s"
                                          for e in m["exports"]))
    t = result.get("tnet")
    if t and "skipped" in t:
        lines.append(f"T-Net: not measured ({t['skipped']})")
    elif t:
        lines.append(f"T-Net (pain, measured here): {t['wall_s']} s, {t['epochs']} epochs, exit {t['exit_code']}")
    return lines
