"""Model benchmark: every bundled model in PyTorch eager, ONNX Runtime fp32 and ONNX Runtime int8, batch 1, 8, 32.

The same network three ways: the PyTorch modules the ONNX graphs were traced from (rebuilt from the training run,
`torch.inference_mode()`, `torch.set_num_threads(threads)`), the bundled float32 graphs, and their int8 (QDQ)
copies — all in ONNX Runtime sessions opened with the service's own options. fp32 and int8 are called in turn, call
by call, so that load from elsewhere on the machine hits both alike (eager is timed on its own: its OpenMP threads
spin after each call and would slow what runs next); eager also runs with one thread at batch 1 (on a shared
2-core machine its OpenMP threads often lose more than they gain), and the targets use its faster setting.
A streaming student is timed per graph (encoder over B frames, head over B windows of T embeddings), as the
per-frame step the service runs (encoder then head, "step") and over whole clips (B x T frames, then the head:
"clip", full mode); a teacher's one graph takes B clips of T frames and B privileged inputs.

Targets (2 CPU cores): ONNX Runtime fp32 batch-1 latency <= 0.5x PyTorch eager; int8 <= 0.6x fp32, with the
accuracy change stated (validation and test parts of the training run). Also: student vs teacher cost per
prediction (the student's step against the teacher's clip) and per clip (student over T frames + head).
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import BenchContext, latency_stats, target, time_calls, time_interleaved

NAME = "model"


def _settings(ctx: BenchContext) -> dict:
    if ctx.quick:
        return {"warmup": 1, "min_calls": 3, "min_seconds": 0.05, "max_calls": 500}
    return {"warmup": 10, "min_calls": 50, "min_seconds": 2.0, "max_calls": 20000}


def _batches(ctx: BenchContext) -> list[int]:
    return [1, 8, 32, 64] if ctx.cuda else [1, 8, 32]


def _ort_call(session, feed: dict[str, np.ndarray]):
    names = [o.name for o in session.get_outputs()]
    return lambda: session.run(names, feed)


def _step_call(calls: list):
    def step() -> None:
        for c in calls:
            c()
    return step


def _bench_model(model, ctx: BenchContext, torch, device: str) -> dict:
    from benchmarks.bundle import int8_graphs, open_session, ort_profile, torch_graphs
    from training.models import count_macs

    timing = _settings(ctx)
    sync = torch.cuda.synchronize if device == "cuda" else None
    graphs = torch_graphs(model)
    for g in graphs.values():
        g.module.to(device).eval()
    fp32 = {g: open_session(model, g, p, ctx) for g, p in model.graph_paths.items()}
    int8_paths, accuracy = int8_graphs(model, ctx)
    int8 = {g: open_session(model, g, p, ctx) for g, p in int8_paths.items()}
    names = list(model.graph_paths)
    window = model.manifest.preprocessing.window
    rows = []
    for batch in _batches(ctx):
        feeds = {g: model.random_inputs(g, batch, seed=batch) for g in names}
        if "encoder" in names and not ctx.quick:  # a clip of T frames per row: what the teacher's one graph takes
            feeds["encoder:clip"] = model.random_inputs("encoder", batch * window, seed=batch)
        tensors = {g: tuple(torch.from_numpy(v).to(device) for v in f.values()) for g, f in feeds.items()}
        runtimes = {"eager": {g: (lambda m=graphs[g.split(":")[0]].module, x=tensors[g]: m(*x)) for g in feeds},
                    "ort-fp32": {g: _ort_call(fp32[g.split(":")[0]], feeds[g]) for g in feeds},
                    "ort-int8": {g: _ort_call(int8[g.split(":")[0]], feeds[g]) for g in feeds}}
        parts: dict[str, dict] = {rt: {g: calls[g] for g in names} for rt, calls in runtimes.items()}
        if "encoder" in names:
            for rt, calls in runtimes.items():
                parts[rt]["step"] = _step_call([calls["encoder"], calls["head"]])  # per frame: B frames, B windows
                if "encoder:clip" in calls:  # B clips: B·T frames, B windows
                    parts[rt]["clip"] = _step_call([calls["encoder:clip"], calls["head"]])
        for part in parts["eager"]:
            with torch.inference_mode():
                times = {"eager": time_calls(parts["eager"][part], sync=sync, **timing)}
            # fp32 and int8 in turn, call by call, so that their ratio is robust to load from elsewhere. Not eager:
            # its OpenMP threads keep spinning for a while after each call and would slow whatever runs next.
            times |= time_interleaved({rt: parts[rt][part] for rt in ("ort-fp32", "ort-int8")}, **timing)
            for runtime, s in times.items():
                rows.append({"model": model.name, "role": model.manifest.role, "graph": part, "runtime": runtime,
                             "batch": batch, **latency_stats(s, batch)})
        if batch == 1 and device == "cpu" and ctx.n_threads > 1:  # eager's other sensible setting: one thread
            main = "model" if "model" in names else "step"
            eager = runtimes["eager"]
            fn = _step_call([eager["encoder"], eager["head"]]) if main == "step" else eager["model"]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.inference_mode():
                    s = time_calls(fn, **timing)
            finally:
                torch.set_num_threads(threads)
            rows.append({"model": model.name, "role": model.manifest.role, "graph": main, "runtime": "eager-1thread",
                         "batch": 1, **latency_stats(s, 1)})
    profile = {}
    if "encoder" in names:  # where the time of the per-frame encoder goes, fp32 against int8 (ORT's profiler)
        calls = 30 if ctx.quick else 200
        for batch in (1, 32):
            feed = model.random_inputs("encoder", batch)
            f, i = (ort_profile(g["encoder"], feed, ctx, calls) for g in (model.graph_paths, int8_paths))
            by_kind = {k: round(i["convolutions"][k]["ms_per_call"] / v["ms_per_call"], 3)
                       for k, v in f["convolutions"].items() if k in i["convolutions"] and v["ms_per_call"] > 0}
            profile[batch] = {"fp32": f, "int8": i, "int8_over_fp32_by_conv_kind": by_kind}
    with torch.inference_mode():
        macs = {g: count_macs(d.module.cpu(), *(torch.from_numpy(v) for v in model.random_inputs(g, 1).values()))
                for g, d in graphs.items()}
    return {"rows": rows, "int8_accuracy": accuracy, "macs": macs, "encoder_profile": profile}


def _find(rows: list[dict], model: str, graph: str, runtime: str, batch: int) -> dict | None:
    return next((r for r in rows if (r["model"], r["graph"], r["runtime"], r["batch"]) == (model, graph, runtime,
                                                                                           batch)), None)


def _main_graph(rows: list[dict], model: str) -> str:
    graphs = {r["graph"] for r in rows if r["model"] == model}
    return "step" if "step" in graphs else "model"


def run(ctx: BenchContext) -> dict:
    import onnxruntime
    import torch

    from benchmarks.bundle import bundled_models, require_runs

    torch.set_num_threads(ctx.n_threads)
    device = "cuda" if ctx.cuda and torch.cuda.is_available() else "cpu"
    notes = []
    if ctx.cuda and device == "cpu":
        notes.append("PyTorch has no CUDA here (CPU wheel): the eager rows ran on the CPU")
    rows, accuracy, macs, profiles = [], {}, {}, {}
    models = bundled_models(ctx)
    require_runs(models, data=True)
    for m in models:
        ctx.log(f"  model: {m.name}")
        r = _bench_model(m, ctx, torch, device)
        rows += r["rows"]
        accuracy[m.name] = r["int8_accuracy"]
        macs[m.name] = r["macs"]
        if r["encoder_profile"]:
            profiles[m.name] = r["encoder_profile"]

    targets, ratios = [], {}
    for m in models:
        main = _main_graph(rows, m.name)
        fp32, int8 = (_find(rows, m.name, main, rt, 1) for rt in ("ort-fp32", "ort-int8"))
        eager = min((r for r in (_find(rows, m.name, main, rt, 1) for rt in ("eager", "eager-1thread")) if r),
                    key=lambda r: r["median_ms"])  # the faster of the two eager settings: the harder target
        r_fp32 = fp32["median_ms"] / eager["median_ms"]
        r_int8 = int8["median_ms"] / fp32["median_ms"]
        ratios[m.name] = {"graph": main, "eager_b1": eager["runtime"], "ort_fp32_over_eager_b1": round(r_fp32, 4),
                          "int8_over_fp32_b1": round(r_int8, 4),
                          "int8_over_fp32": {b: round(_find(rows, m.name, main, "ort-int8", b)["median_ms"]
                                                      / _find(rows, m.name, main, "ort-fp32", b)["median_ms"], 4)
                                             for b in _batches(ctx)}}
        acc = accuracy[m.name]
        change = "; ".join(f"{p} ({acc[p]['samples']} clips) {acc[p]['fp32']:.3f} -> {acc[p]['int8']:.3f}"
                           for p in ("val", "test"))
        targets.append(target(f"{m.name}: ORT fp32 batch-1 latency / PyTorch eager", r_fp32, 0.5, "x",
                              note=f"eager: {eager['runtime']} (the faster setting), {eager['median_ms']:.3f} ms; "
                                   f"ORT fp32 {fp32['median_ms']:.3f} ms ({main})"))
        kernels = ""
        if m.name in profiles:  # which convolutions int8 speeds up, and which it slows down (ORT's profile)
            kernels = "; encoder kernels int8/fp32 " + ", ".join(
                f"batch {b}: " + " ".join(f"{k} {v:.2f}" for k, v in p["int8_over_fp32_by_conv_kind"].items())
                for b, p in profiles[m.name].items())
        targets.append(target(f"{m.name}: ORT int8 batch-1 latency / ORT fp32", r_int8, 0.6, "x",
                              note=f"{acc['metric']} {change}{kernels}"))

    # student vs teacher: per prediction (a stream's per-frame update) and per clip of T frames
    costs = []
    for task in sorted({m.manifest.task for m in models}):
        student = next((m for m in models if m.manifest.task == task and m.manifest.role == "student"), None)
        teacher = next((m for m in models if m.manifest.task == task and m.manifest.role == "teacher"), None)
        if student is None or teacher is None or "encoder" not in student.graph_paths:
            continue
        t = student.manifest.preprocessing.window
        s_step = _find(rows, student.name, "step", "ort-fp32", 1)["median_ms"]
        clip = _find(rows, student.name, "clip", "ort-fp32", 1)  # full mode only
        s_clip = clip["median_ms"] if clip else None
        t_clip = _find(rows, teacher.name, "model", "ort-fp32", 1)["median_ms"]
        sm = macs[student.name]["encoder"] + macs[student.name]["head"]
        tm = macs[teacher.name]["model"]
        costs.append({"task": task, "student": student.name, "teacher": teacher.name, "window": t,
                      "student_step_ms": s_step, "teacher_clip_ms": t_clip,
                      "teacher_over_student_per_prediction": round(t_clip / s_step, 2),
                      "student_clip_ms": s_clip,
                      "teacher_over_student_per_clip": round(t_clip / s_clip, 2) if s_clip else None,
                      "student_step_macs": sm, "student_clip_macs": t * macs[student.name]["encoder"]
                      + macs[student.name]["head"], "teacher_clip_macs": tm,
                      "teacher_over_student_macs_per_prediction": round(tm / sm, 2),
                      "note": "the teacher also needs the privileged signal, which a webcam does not give"})
    return {"name": NAME, "rows": rows, "ratios": ratios, "int8_accuracy": accuracy, "macs": macs,
            "student_vs_teacher": costs, "encoder_profiles": profiles, "targets": targets, "notes": notes,
            "settings": {**_settings(ctx), "batches": _batches(ctx), "threads": ctx.n_threads, "device": device,
                         "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
                         "session_options": "service.inference.runtime.open_graph: ORT_ENABLE_ALL, intra-op threads = "
                                            f"{ctx.n_threads}, inter-op 1, no spinning"}}


def _top_ops(profile: dict, n: int = 3) -> str:
    ops = [f"{op} {v['ms_per_call']:.3f} ms x{v['nodes']:g}" for op, v in list(profile["by_op"].items())[:n]]
    convs = [f"{k} {v['ms_per_call']:.3f}" for k, v in profile["convolutions"].items()]
    return ", ".join(ops) + (f"; convolutions: {', '.join(convs)}" if convs else "")


def table(result: dict) -> list[str]:
    lines = [f"{'model':16} {'graph':8} {'batch':>5} {'eager ms':>10} {'fp32 ms':>9} {'int8 ms':>9} "
             f"{'fp32/eager':>10} {'int8/fp32':>9} {'fp32 items/s':>12}"]
    rows = result["rows"]
    keys = dict.fromkeys((r["model"], r["graph"], r["batch"]) for r in rows)
    for model, graph, batch in keys:
        e, f, i = (_find(rows, model, graph, rt, batch) for rt in ("eager", "ort-fp32", "ort-int8"))
        lines.append(f"{model:16} {graph:8} {batch:5d} {e['median_ms']:10.3f} {f['median_ms']:9.3f} "
                     f"{i['median_ms']:9.3f} {f['median_ms'] / e['median_ms']:10.3f} "
                     f"{i['median_ms'] / f['median_ms']:9.3f} {f['per_s']:12.1f}")
    for c in result["student_vs_teacher"]:
        lines.append(f"{c['task']}: teacher/student cost per prediction {c['teacher_over_student_per_prediction']}x "
                     f"(time), {c['teacher_over_student_macs_per_prediction']}x (MACs); per clip "
                     f"{c['teacher_over_student_per_clip'] or 'n/a (full mode) '}x")
    for name, prof in result["encoder_profiles"].items():
        for batch, p in prof.items():
            lines.append(f"{name} encoder profile, batch {batch}: fp32 {p['fp32']['kernel_ms_per_call']:.3f} ms "
                         f"({_top_ops(p['fp32'])}); int8 {p['int8']['kernel_ms_per_call']:.3f} ms "
                         f"({_top_ops(p['int8'])}); int8/fp32 by convolution: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in p.get("int8_over_fp32_by_conv_kind", {}).items()))
    for name, acc in result["int8_accuracy"].items():
        lines.append(f"{name} int8 accuracy ({acc['metric']}): " + "; ".join(
            f"{p} {acc[p]['fp32']:.3f} -> {acc[p]['int8']:.3f} ({acc[p]['change_points']:+.1f} points, "
            f"max |output change| {acc[p]['max_abs_output_change']:.3g})" for p in ("val", "test")))
    return lines
