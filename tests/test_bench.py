"""`pkdot bench`: the quick mode of a few benchmarks runs and writes results of the documented shape.

Measured values are machine-dependent; the tests check the accounting (every frame sent is answered, dropped or an
error), the units and the invariants, not speed targets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import ROOT, latency_stats, target
from benchmarks.training import parse_log
from pkdot.cli import main

RUNS = ROOT / "runs" / "models"
LOG = """\
pkdot synth biovid: 8 subjects, 80 samples, 80 videos, 11040 frames, 13.7 MB in data/synthetic/biovid (40.5 s)
face-crop cache: data/cache/biovid-synthetic
samples: 80 (0 already cached, 80 prepared now, 0 skipped as broken)
time: 28.6 s
2026-11-25 00:53:49,794 INFO training.engine: epoch 1/3  train loss 1.5891  val accuracy 0.4000  (best 0.4000 @ 1)
2026-11-25 00:53:59,794 INFO training.engine: epoch 2/3  train loss 1.4829  val accuracy 0.4000  (best 0.4000 @ 1)
2026-11-25 00:54:09,794 INFO training.engine: epoch 3/3  train loss 0.9934  val accuracy 0.7000  (best 0.7000 @ 3)
run folder: runs/models/pain-teacher  best epoch 3  val accuracy 0.7000  test accuracy 0.6000
2026-11-25 00:54:15,794 INFO training.export.export: exported pain-teacher 0.1.0+pain-teacher (fp32) to models/x

real	12m55.198s
user	10m8.248s
sys	0m38.733s
"""


def test_parse_make_models_log() -> None:
    m = parse_log(LOG)
    assert m["synth"] == {"biovid": 40.5}
    assert m["prepare"] == {"biovid-synthetic": 28.6}
    assert m["runs"] == [{"run": "pain-teacher", "epochs": 3, "seconds_first_to_last_epoch_plus_one": 30.0,
                          "mean_epoch_s": 10.0}]
    assert m["exports"] == [{"model": "pain-teacher", "seconds_since_previous_log_line": 6.0}]
    assert (m["real_s"], m["user_s"], m["sys_s"]) == (775.2, 608.2, 38.7)


def test_stats_and_targets() -> None:
    s = latency_stats([0.001, 0.002, 0.003, 0.004], items=8)
    assert s["calls"] == 4 and s["median_ms"] == pytest.approx(2.5) and s["per_s"] == pytest.approx(3200.0)
    assert target("x", 0.4, 0.5)["met"] is True
    assert target("x", 0.6, 0.5)["met"] is False
    assert target("x", None, 0.5)["met"] is None


def _bench(tmp_path: Path, *names: str) -> Path:
    cache = ROOT / "benchmarks" / ".cache"  # the rendered video is reused between runs (13 s to render)
    code = main(["bench", "--quick", "--only", *names, "--out", str(tmp_path), "--cache", str(cache),
                 "--training-log", str(tmp_path / "no-such.log")])
    assert code == 0
    out = tmp_path / "quick"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "quick" and summary["failed"] == []
    assert summary["machine"]["cores"] >= 1 and summary["machine"]["cpu"]
    for t in summary["targets"]:
        assert {"target", "value", "limit", "unit", "met", "benchmark"} <= set(t)
    return out


@pytest.mark.slow
def test_quick_pipeline_and_training(tmp_path: Path) -> None:
    out = _bench(tmp_path, "pipeline", "training")
    pipe = json.loads((out / "pipeline.json").read_text())
    assert pipe["frame"] == {"width": 640, "height": 480, "jpeg_bytes_mean": pipe["frame"]["jpeg_bytes_mean"]}
    assert pipe["faces_found"] > 0.9  # the benchmark video shows a face in (nearly) every frame
    stages = pipe["stages"]
    assert set(stages) == {"decode", "detect", "track", "face", "preprocess", "inference", "postprocess"}
    assert all(s["median_ms"] > 0 for s in stages.values())
    assert pipe["sum_of_stages_ms"] == pytest.approx(sum(stages[s]["mean_ms"] for s in pipe["sum_over"]), rel=1e-3)
    assert pipe["chain"]["calls"] >= 20 and pipe["chain_over_sum"] > 0
    tracking = {t["detect_every"]: t for t in pipe["tracking"]}  # detect-then-track against detecting every frame
    every = tracking[1]
    assert every["detections"] == every["frames"] and every["iou_mean"] == 1.0 and every["output_abs_diff_mean"] == 0
    assert max(tracking) >= 10 and tracking[max(tracking)]["detections"] < every["detections"] / 5
    for t in tracking.values():
        assert 0.5 < t["iou_p5"] <= t["iou_mean"] <= 1.0 and t["faces_found"] > 0.9
    training = json.loads((out / "training.json").read_text())
    assert training["make_models"] is None and "make-models.sh" in training["note"]  # no log given: said so
    assert training["tnet"] is None  # the quick mode trains nothing


@pytest.mark.slow
def test_quick_e2e_accounts_for_every_frame(tmp_path: Path) -> None:
    out = _bench(tmp_path, "e2e")
    e2e = json.loads((out / "e2e.json").read_text())
    assert [lv["streams"] for lv in e2e["levels"]] == [1, 4, 8, 16, 32]
    for lv in e2e["levels"]:
        assert lv["sent"] == pytest.approx(lv["streams"] * 15 * 4, abs=lv["streams"])
        assert lv["sent"] == lv["answered"] + lv["dropped"] + lv["errors"] + lv["unanswered"]
        assert lv["unanswered"] == 0 and lv["errors"] == 0 and lv["connections_failed_or_closed"] == []
        assert lv["dropped"] == lv["dropped_seen_as_gaps"]
        r = lv["rtt_ms"]
        assert 0 < r["p50"] <= r["p95"] <= r["p99"] <= r["max"]
        assert len(lv["rtt_cdf_ms"]) == 201
        assert lv["server"]["rss_mib_max"] > 50 and lv["server"]["cpu_s"] > 0
    assert 0 < e2e["cold_start_s"] < 120
    assert {p.name for p in out.glob("*.png")} == {"latency_cdf.png", "throughput_vs_streams.png"}


@pytest.mark.slow
@pytest.mark.skipif(not (RUNS / "pain-student" / "best.pt").is_file(), reason="needs runs/models (make models)")
def test_quick_streaming_windows(tmp_path: Path) -> None:
    out = _bench(tmp_path, "streaming")
    streaming = json.loads((out / "streaming.json").read_text())
    assert streaming["students"], "every bundled streaming student is measured"
    for s in streaming["students"]:
        assert set(s["step"]) == {"6", "8", "32"}  # windows, as JSON keys
        assert s["head"]["32"]["median_ms"] > 0 and s["ratio_32_over_8"] > 0


def test_quantised_convolutions_are_profiled_by_kind(tmp_path: Path) -> None:
    """A stem, a depthwise and a pointwise convolution, exported and quantised as `pkdot export --int8` does: ONNX
    Runtime's profile of both graphs names every convolution's kind, so int8 and fp32 compare kind by kind."""
    import torch

    from benchmarks.bundle import conv_kinds_by_name, ort_profile
    from benchmarks.common import BenchContext
    from benchmarks.floor import int8_gemm_rates
    from training.export.quantize import quantize_graph

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU()).eval()
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(fp32), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}}, dynamo=False)
    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16), dtype=np.float32)
    quantize_graph(fp32, int8, {"x": x})
    for path in (fp32, int8):
        assert sorted(conv_kinds_by_name(path).values()) == ["depthwise", "full", "pointwise"]
    ctx = BenchContext(quick=True, threads=1)
    profiles = {p.stem: ort_profile(p, {"x": x[:2]}, ctx, calls=5) for p in (fp32, int8)}
    assert "QLinearConv" in profiles["int8"]["by_op"]
    for profile in profiles.values():
        assert set(profile["convolutions"]) == {"depthwise", "full", "pointwise"}
        assert all(v["nodes"] == 1 and v["ms_per_call"] > 0 for v in profile["convolutions"].values())
    rates = int8_gemm_rates(ctx)
    assert [r["n"] for r in rates] == [256, 512, 1024]
    assert all(r["int8_ms"] > 0 and r["int8_over_fp32"] == pytest.approx(r["int8_ms"] / r["fp32_ms"], rel=0.01)
               for r in rates)


def test_report_updates_only_the_results_part_of_the_doc(tmp_path: Path) -> None:
    from benchmarks.report import MARKER, update_doc

    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nWritten by hand.\n\n{MARKER}\n\nSTALE TABLE\n")
    text = update_doc(ROOT / "benchmarks" / "results" / "quick", doc)
    assert text == doc.read_text()
    assert text.startswith("# Benchmarks\n\nWritten by hand.\n") and "STALE TABLE" not in text
    assert text.count(MARKER) == 1 and "### targets" in text and "| model |" in text
    assert update_doc(ROOT / "benchmarks" / "results" / "quick", doc) == text  # idempotent


def test_bench_url_loads_a_server_started_elsewhere(tmp_path: Path, capsys) -> None:
    from benchmarks.common import BenchContext
    from benchmarks.server import ServerProcess

    cache = ROOT / "benchmarks" / ".cache"
    with ServerProcess(BenchContext(cache_dir=cache), ["--max-streams", "64"], label="elsewhere") as server:
        code = main(["bench", "--quick", "--url", server.url, "--out", str(tmp_path), "--cache", str(cache)])
        assert code == 0
    e2e = json.loads((tmp_path / "quick-remote" / "e2e.json").read_text())
    assert e2e["settings"]["url"] == server.url and e2e["cold_start_s"] is None
    assert [lv["streams"] for lv in e2e["levels"]] == [1, 4, 8, 16, 32]
    for lv in e2e["levels"]:  # seen from outside: latency and accounting, no server CPU or memory
        assert lv["sent"] == lv["answered"] + lv["dropped"] + lv["errors"] + lv["unanswered"] and lv["answered"] > 0
        assert lv["server"] is None and lv["server_cpu_ms_per_answer"] is None
    assert "n/a" in capsys.readouterr().out
    assert main(["bench", "--url", "ftp://example.org"]) == 2
    assert main(["bench", "--url", server.url, "--only", "model"]) == 2
