"""Markdown tables of a results folder, for docs/benchmarks.md:
`python -m benchmarks.report benchmarks/results/full [docs/benchmarks.md]` (prints them, or puts them in the doc).

Every table is printed with the machine and load average its benchmark ran under, so that no figure travels
without them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    return None if "error" in r or "skipped" in r else r


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _x(ratio: float | None) -> str:
    return "n/a (full mode)" if ratio is None else f"{ratio}x"


def _under(r: dict) -> str:
    m = r["machine"]
    return (f"*`{r['command']}` ({r['mode']} mode), finished {r.get('finished', '?')}, {r['seconds']:.0f} s, "
            f"load average {m['load_average']} -> {m['load_average_after']} (1, 5, 15 min)*")


def machine(summary: dict) -> list[str]:
    m = summary["machine"]
    v = m["versions"]
    versions = ", ".join(f"{k} {v[k]}" for k in ("python", "onnxruntime", "torch", "numpy", "mediapipe",
                                                 "opencv-contrib-python", "uvicorn", "websockets") if k in v)
    return [f"- CPU: {m['cpu']}; {m['cores']} cores; {m['memory_gib']} GiB; {m['os']}",
            f"- software: {versions}",
            f"- git: {m['git']['commit'][:12]}{' (uncommitted changes)' if m['git']['dirty'] else ''}; providers "
            f"{m['providers']}, {m['threads']} threads",
            f"- last command: `{summary['command']}`, {summary['seconds']:.0f} s; load average at its start "
            f"{m['load_average']}, at its end {summary['load_average_end']}"]


def model(r: dict) -> list[str]:
    rows = r["rows"]

    def find(model: str, graph: str, runtime: str, batch: int) -> dict | None:
        return next((x for x in rows if (x["model"], x["graph"], x["runtime"], x["batch"]) ==
                     (model, graph, runtime, batch)), None)

    out = [_under(r), "",
           "| model | graph | batch | eager median / p95 ms | ORT fp32 median / p95 ms | ORT int8 median / p95 ms | "
           "fp32 / eager | int8 / fp32 | fp32 items/s | int8 items/s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in dict.fromkeys((x["model"], x["graph"], x["batch"]) for x in rows):
        e, f, i = (find(*key[:2], rt, key[2]) for rt in ("eager", "ort-fp32", "ort-int8"))
        if not (e and f and i):
            continue
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | {_f(e['median_ms'], 3)} / {_f(e['p95_ms'], 3)} | "
                   f"{_f(f['median_ms'], 3)} / {_f(f['p95_ms'], 3)} | {_f(i['median_ms'], 3)} / {_f(i['p95_ms'], 3)} | "
                   f"{f['median_ms'] / e['median_ms']:.3f} | {i['median_ms'] / f['median_ms']:.3f} | "
                   f"{f['per_s']:.0f} | {i['per_s']:.0f} |")
    one = [x for x in rows if x["runtime"] == "eager-1thread"]
    if one:
        out += ["", "PyTorch eager with one thread, batch 1: " + "; ".join(
            f"{x['model']} {x['graph']} {x['median_ms']:.3f} ms" for x in one)]
    out += ["", "| task | teacher / student per prediction (time) | (MACs) | per clip of T frames (time) | student "
            "step MACs | teacher clip MACs |", "|---|---:|---:|---:|---:|---:|"]
    for c in r["student_vs_teacher"]:
        out.append(f"| {c['task']} | {c['teacher_over_student_per_prediction']}x | "
                   f"{c['teacher_over_student_macs_per_prediction']}x | {_x(c['teacher_over_student_per_clip'])}"
                   f" | {c['student_step_macs'] / 1e6:.1f} M | {c['teacher_clip_macs'] / 1e6:.1f} M |")
    out += ["", "| model | metric | val fp32 -> int8 (clips) | test fp32 -> int8 (clips) | max abs output change "
            "(val / test) |", "|---|---|---|---|---|"]
    for name, a in r["int8_accuracy"].items():
        v, t = a["val"], a["test"]
        out.append(f"| {name} | {a['metric']} | {v['fp32']:.3f} -> {v['int8']:.3f} ({v['change_points']:+.1f} pts, "
                   f"{v['samples']}) | {t['fp32']:.3f} -> {t['int8']:.3f} ({t['change_points']:+.1f} pts, "
                   f"{t['samples']}) | {v['max_abs_output_change']:.3g} / {t['max_abs_output_change']:.3g} |")
    for name, prof in r.get("encoder_profiles", {}).items():
        for batch, p in prof.items():
            def ops(d: dict) -> str:
                return ", ".join(f"{op} {v['ms_per_call']:.3f} ms ({v['nodes']:g})" for op, v in d["by_op"].items()
                                 if v["ms_per_call"] >= 0.01)
            out.append(f"\n{name} encoder, batch {batch}, ONNX Runtime profile (kernel time per call, nodes): fp32 "
                       f"{p['fp32']['kernel_ms_per_call']:.3f} ms = {ops(p['fp32'])}; convolutions "
                       + ", ".join(f"{k} {v['ms_per_call']:.3f} ms" for k, v in p["fp32"]["convolutions"].items())
                       + f". int8 {p['int8']['kernel_ms_per_call']:.3f} ms = {ops(p['int8'])}; convolutions "
                       + ", ".join(f"{k} {v['ms_per_call']:.3f} ms" for k, v in p["int8"]["convolutions"].items())
                       + ". int8/fp32 by convolution kind: "
                       + ", ".join(f"{k} {v:.2f}x" for k, v in p.get("int8_over_fp32_by_conv_kind", {}).items())
                       + ".")
    return out


def floor(r: dict) -> list[str]:
    out = [_under(r), "", "| GEMM | n | median ms | GFLOP/s |", "|---|---:|---:|---:|"]
    out += [f"| {g['engine']} | {g['n']} | {g['median_ms']:.3f} | {g['gflops']:.1f} |" for g in r["gemm"]]
    if r.get("int8_gemm"):
        out += ["", "| int8 GEMM (ONNX Runtime MatMulInteger, uint8 x int8) | n | fp32 ms | int8 ms | int8 GOP/s | "
                "int8 / fp32 |", "|---|---:|---:|---:|---:|---:|"]
        out += [f"| | {g['n']} | {g['fp32_ms']:.3f} | {g['int8_ms']:.3f} | {g['int8_gops']:.0f} | "
                f"{g['int8_over_fp32']:.2f}x |" for g in r["int8_gemm"]]
    out += ["", f"ONNX Runtime dispatch cost per node (a chain of trivial nodes): {r['dispatch_us_per_node']:.2f} us.",
            "", "| student | MFLOP / frame | floor at best GEMM rate | ORT fp32 batch 1 | % of GEMM rate | ORT fp32 "
            "batch 32 per frame | % of GEMM rate | nodes | dispatch share, batch 1 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in r["students"]:
        m, f = s["measured_ms_per_frame"], s["fraction_of_gemm_rate"]
        out.append(f"| {s['model']} | {s['flops_per_frame'] / 1e6:.1f} | {s['floor_ms']:.4f} ms | {m['1']:.3f} ms | "
                   f"{100 * f['1']:.1f} % | {m['32']:.3f} ms | {100 * f['32']:.1f} % | "
                   f"{sum(s['optimised_nodes'].values())} | {100 * s['dispatch_share_batch1']:.1f} % |")
    return out


def pipeline(r: dict) -> list[str]:
    out = [_under(r), "", f"Frame: 640x480 JPEG, {r['frame']['jpeg_bytes_mean']} bytes on average; model "
           f"{r['model']}; face found in {100 * r['faces_found']:.0f} % of {r['frames']} frames.", "",
           "| stage | alone, back to back: mean ms | median ms | p95 ms | alone, paced: mean ms | inside the chain: "
           "mean ms | chain / alone |", "|---|---:|---:|---:|---:|---:|---:|"]
    paced, steps = r.get("stages_paced", {}), r.get("chain_steps", {})
    for name, s in r["stages"].items():
        label = {"face": f"face: detect-then-track (detect every {s.get('detect_every')})",
                 "detect": "face: detection on every frame", "track": "face: tracking alone"}.get(name, name)
        p = f"{paced[name]['mean_ms']:.3f}" if name in paced else ""
        c = f"{steps[name]['mean_ms']:.3f} | {r['chain_step_over_alone'][name]:.2f}x" if name in steps else " | "
        out.append(f"| {label} | {s['mean_ms']:.3f} | {s['median_ms']:.3f} | {s['p95_ms']:.3f} | {p} | {c} |")
    out += ["", f"Sum of the stages (decode, detect-then-track, preprocess, inference, postprocess): "
            f"**{r['sum_of_stages_ms']:.3f} ms** back to back; with detection on every frame "
            f"{r['sum_detect_every_frame_ms']:.3f} ms. "
            f"The chain in one thread: mean {r['chain']['mean_ms']:.3f} ms, p95 {r['chain']['p95_ms']:.3f} ms "
            f"(**{r['chain_over_sum']:.2f}x** the back-to-back sum)."]
    if "chain_paced" in r:
        out[-1] += (f" Paced as a 15 fps stream: sum {r['sum_of_stages_paced_ms']:.3f} ms, chain "
                    f"{r['chain_paced']['mean_ms']:.3f} ms (**{r['chain_paced_over_paced_sum']:.2f}x**).")
    if r.get("tracking"):
        t = r["tracking"]
        what = "expected pain level, 0-4" if r["model"].startswith("pain") else "valence and arousal"
        out += ["", f"Detect-then-track against detection on every frame ({t[0]['frames']} frames; the model's output: "
                f"{what}; its own mean change from one frame to the next: {t[0]['output_frame_to_frame_change']:.4f}):",
                "", "| detect every | face ms per frame | detections | box IoU mean | IoU 5th percentile | output "
                "difference mean | p95 |", "|---:|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {x['detect_every']} | {x['face_ms_per_frame']:.3f} | {x['detections']} | {x['iou_mean']:.3f} | "
                f"{x['iou_p5']:.3f} | {x['output_abs_diff_mean']:.4f} | {x['output_abs_diff_p95']:.4f} |" for x in t]
    return out


def streaming(r: dict) -> list[str]:
    out = [_under(r), "", "| student | T=6 (bundled) ms | T=8 ms | T=32 ms | T=32 / T=8 | head alone T=8 / T=32 ms |",
           "|---|---:|---:|---:|---:|---:|"]
    for s in r["students"]:
        st, hd = s["step"], s["head"]
        out.append(f"| {s['model']} | {st['6']['median_ms']:.3f} | {st['8']['median_ms']:.3f} | "
                   f"{st['32']['median_ms']:.3f} | **{s['ratio_32_over_8']:.3f}** | {hd['8']['median_ms']:.3f} / "
                   f"{hd['32']['median_ms']:.3f} |")
    return out


def e2e(r: dict) -> list[str]:
    out = [_under(r), "", "| streams | offered fps | RTT p50 ms | p95 ms | p99 ms | sent | answered | dropped | "
           "errors | unaccounted | answered/s | server CPU (cores) | server CPU ms per answered frame | server RSS max "
           "MiB | client CPU (cores) | server total p50 ms |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def num(value: float | None, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    for lv in r["levels"]:
        t, srv = lv["rtt_ms"], lv.get("server") or {}
        out.append(f"| {lv['streams']} | {lv['offered_fps']:.0f} | {num(t['p50'], 2)} | {num(t['p95'], 2)} | "
                   f"{num(t['p99'], 2)} | {lv['sent']} | {lv['answered']} | {lv['dropped']} | {lv['errors']} | "
                   f"{lv['unanswered']} | {lv['answered_per_s']:.1f} | {num(srv.get('cpu_cores'), 2)} | "
                   f"{num(lv.get('server_cpu_ms_per_answer'), 2)} | {num(srv.get('rss_mib_max'), 0)} | "
                   f"{lv['client_cpu_cores']:.2f} | {num(lv['server_total_ms']['p50'], 2)} |")
    cold = r.get("cold_start_s")
    out += ["", f"{r['p95_over_100ms_note']}." + (f" Cold start of this server: {cold:.2f} s." if cold else "")]
    return out


def batching(r: dict) -> list[str]:
    out = [_under(r), "", "| streams | offered fps | answered/s on | off | on / off | RTT p95 on / off ms | server "
           "CPU ms per frame on / off | encoder rows per call on |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in r["ratios"]:
        out.append(f"| {x['streams']} | {x['offered_fps']:.0f} | {x['answered_per_s']['on']:.1f} | "
                   f"{x['answered_per_s']['off']:.1f} | **{x['throughput_ratio_on_over_off']:.3f}** | "
                   f"{x['rtt_p95_ms']['on']:.1f} / {x['rtt_p95_ms']['off']:.1f} | "
                   f"{x['server_cpu_ms_per_answer']['on']:.2f} / {x['server_cpu_ms_per_answer']['off']:.2f} | "
                   f"{_f(x['encoder_rows_per_call']['on'])} |")
    if len(r["results"]) > 2:
        out += ["", "Every setting (batching on/off, one process or two workers):", "",
                "| setting | streams | answered/s | RTT p50 ms | p95 ms | dropped | errors | server CPU (cores) | "
                "server CPU ms per answered frame |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for mode, levels in r["results"].items():
            for lv in levels:
                out.append(f"| {mode} | {lv['streams']} | {lv['answered_per_s']:.1f} | {_f(lv['rtt_ms']['p50'])} | "
                           f"{_f(lv['rtt_ms']['p95'])} | {lv['dropped']} | {lv['errors']} | "
                           f"{lv['server']['cpu_cores']:.2f} | {_f(lv['server_cpu_ms_per_answer'])} |")
    return out


def memory(r: dict) -> list[str]:
    s = r["soak"]
    return [_under(r), "",
            f"- cold start to /readyz: {r['cold_start_s']} s (median **{r['cold_start_median_s']:.2f} s**)",
            f"- RSS ready, idle, with {', '.join(r['models'])}: **{max(r['rss_mib_ready']):.0f} MiB**",
            f"- soak, {s['streams']} streams x 15 fps for {s['seconds']:g} s ({s['load']['answered']} frames answered, "
            f"{s['load']['errors']} errors, RTT p95 {s['load']['rtt_ms']['p95']} ms): RSS {s['rss_mib_start']:.1f} -> "
            f"{s['rss_mib_end']:.1f} MiB (**{s['growth_percent']:+.2f} %**), peak {s['rss_mib_peak']:.0f} MiB, slope "
            f"over the second half {s['slope_mib_per_min_second_half']} MiB/min"]


def training(r: dict) -> list[str]:
    m = r.get("make_models")
    out = [_under(r), ""]
    if not m:
        return [*out, r.get("note", "no training log")]
    out += [f"`{m['command']}` (read from {r['log']}): **real {m['real_s']:.0f} s** (user {m['user_s']:.0f} s, sys "
            f"{m['sys_s']:.0f} s), including `scripts/setup.sh` (pip, already installed).", "",
            "| step | seconds |", "|---|---:|"]
    out += [f"| pkdot synth {k} | {v} |" for k, v in m["synth"].items()]
    out += [f"| pkdot prepare {k} | {v} |" for k, v in m["prepare"].items()]
    out += [f"| train {x['run']} ({x['epochs']} epochs, {x['mean_epoch_s']} s each) | "
            f"~{x['seconds_first_to_last_epoch_plus_one']} |" for x in m["runs"]]
    out += [f"| export {x['model']} (since the previous log line) | {x['seconds_since_previous_log_line']} |"
            for x in m["exports"]]
    t = r.get("tnet")
    if t and "skipped" not in t:
        out.append(f"| T-Net, pain (measured by `pkdot bench`: `{t['command']}`, load average "
                   f"{t['load_average_before']}) | {t['wall_s']} |")
    return out


def cluster(r: dict) -> list[str]:
    from statistics import median

    out = [_under(r), "", "| ingress | streams | plain uvicorn p50 / p95 ms | Ray Serve p50 / p95 ms | p50 ratio | "
           "p95 ratio |", "|---|---:|---:|---:|---:|---:|"]
    names = {"ray": "HAProxy (default)", "ray-proxy": "Serve proxy actor"}
    for label, o in r["overhead"].items():
        for n, lv in o["levels"].items():
            plain = [pr[0]["rtt_ms"] for pr in lv["rounds"]]
            ray = [pr[1]["rtt_ms"] for pr in lv["rounds"]]
            out.append(f"| {names.get(label, label)} | {n} | {median(x['p50'] for x in plain):.2f} / "
                       f"{median(x['p95'] for x in plain):.2f} | {median(x['p50'] for x in ray):.2f} / "
                       f"{median(x['p95'] for x in ray):.2f} | **{_x(lv['p50_ratio'])}** | {_x(lv['p95_ratio'])} |")
    t = r["throughput"]
    busy = {n: median(x["machine_cpu_busy"] for x in rs) for n, rs in t["runs"].items()}
    plain = t["answers_per_s"].get("plain")
    out += ["", f"{t['streams']} streams x 15 fps, answered per second (median of {len(t['runs']['1'])} runs each): "
                + (f"plain uvicorn {plain:.1f}, " if plain else "")
                + f"1 replica with both cores **{t['answers_per_s']['1']:.1f}** (machine CPU busy {busy['1']:.0%}), "
                f"2 replicas of one core **{t['answers_per_s']['2']:.1f}** ({busy['2']:.0%}): "
                f"**{_x(t['speedup_2_over_1'])}**"]
    return out


def replica_batching(r: dict) -> list[str]:
    out = [_under(r), "", "| callers | batcher | rows/s | call p50 ms | call p95 ms | rows per ONNX Runtime call |",
           "|---:|---|---:|---:|---:|---:|"]
    for n, sides in r["callers"].items():
        for side, x in sides.items():
            name = "MicroBatcher (ours)" if side == "ours" else "@serve.batch"
            out.append(f"| {n} | {name} | {x['rows_per_s']:.0f} | {x['p50_ms']:.3f} | {x['p95_ms']:.3f} | "
                       f"{x['rows_per_call']:.2f} |")
    return out


SECTIONS = {"model": model, "floor": floor, "pipeline": pipeline, "streaming": streaming, "e2e": e2e,
            "batching": batching, "memory": memory, "training": training, "cluster": cluster,
            "replica_batching": replica_batching}


def report(folder: Path) -> str:
    summary = json.loads((folder / "summary.json").read_text())
    lines = [f"## Results: {folder.name}", "", *machine(summary), ""]
    for name, fn in SECTIONS.items():
        r = _load(folder, name)
        if r is not None:
            lines += [f"### {name}", "", *fn(r), ""]
    lines += ["### targets", "", "| benchmark | target | value | limit | met |", "|---|---|---:|---:|---|"]
    for t in summary["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        value = "n/a" if t["value"] is None else f"{t['value']:g} {t['unit']}"
        lines.append(f"| {t['benchmark']} | {t['target']} | {value} | {t['comparison']} {t['limit']:g} {t['unit']} | "
                     f"{met} |")
    return "\n".join(lines) + "\n"


MARKER = "<!-- results: made by `python -m benchmarks.report FOLDER DOC`; everything below is replaced -->"


def update_doc(folder: Path, doc: Path) -> str:
    """Replaces the results part of `doc` (below MARKER) with the report of `folder`; the written part above stays."""
    head = doc.read_text().split(MARKER, 1)[0].rstrip() + "\n\n" if doc.is_file() else ""
    text = f"{head}{MARKER}\n\n{report(folder)}"
    doc.write_text(text)
    return text


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/full")
    if len(sys.argv) > 2:
        update_doc(folder, Path(sys.argv[2]))
    else:
        print(report(folder))
