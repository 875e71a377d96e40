"""Measure speed, scale and memory (`pkdot bench`): models, floor, pipeline, streaming, end to end, batching, memory.

    pkdot bench --quick                       every benchmark, short (CI smoke; under 3 minutes on 2 idle cores)
    pkdot bench                               the full run that docs/benchmarks.md reports
    pkdot bench --only model e2e              some of them
    pkdot bench --providers cuda              ONNX Runtime on CUDA (the same code; batch sizes up to 64)
    pkdot bench --cluster                     the Ray Serve path against plain uvicorn, 1 vs 2 replicas (cluster extra)
    pkdot bench --url http://HOST:8000        the stream load levels against a server of one's own, elsewhere

Results: OUT/<quick|full>[-cuda]/<benchmark>.json, summary.json (the machine, every target met or missed), and the
plots latency_cdf.png, throughput_vs_streams.png and model_latency.png. A table is printed as each benchmark
ends. Compare ratios measured in the same run, not absolute times across runs (or machines, or load averages:
every file records the load average it was measured under).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from benchmarks import batching, cluster, e2e, floor, memory, model, pipeline, replica_batching, streaming
from benchmarks import training as training_benchmark

# name -> module with run(ctx) -> dict and table(result) -> lines; the order is the order they run in (in-process
# ones first, then the ones with a server). Each imports what it measures inside `run`.
BENCHMARKS: dict[str, ModuleType] = {
    "floor": floor,
    "model": model,
    "streaming": streaming,
    "pipeline": pipeline,
    "e2e": e2e,
    "batching": batching,
    "memory": memory,
    "training": training_benchmark,
}
# run only when asked for (--cluster or --only cluster): they need the cluster extra and start Ray several times
ON_REQUEST: dict[str, ModuleType] = {"cluster": cluster, "replica_batching": replica_batching}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from benchmarks.common import ROOT

    p.add_argument("--quick", action="store_true", help="short runs of every benchmark (CI smoke)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=[*BENCHMARKS, *ON_REQUEST],
                   help=f"run only these: {', '.join([*BENCHMARKS, *ON_REQUEST])}")
    p.add_argument("--cluster", action="store_true",
                   help="run the cluster benchmarks: Ray Serve against plain uvicorn, 1 vs 2 replicas, and batching "
                        "inside a replica, ours against @serve.batch (docs/cluster.md)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                   help="results folder (default benchmarks/results); files go to OUT/quick or OUT/full")
    p.add_argument("--providers", choices=["cpu", "cuda"], default="cpu", help="ONNX Runtime providers (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime / torch threads (default 0: one per core)")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models", help="bundled models (default models/)")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "models",
                   help="their training runs, for the PyTorch eager baseline (default runs/models/)")
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache",
                   help="generated video, int8 graphs, exported heads, logs (default benchmarks/.cache)")
    p.add_argument("--training-log", type=Path,
                   help="output of `time bash scripts/make-models.sh` (default /tmp/make-models.log)")
    p.add_argument("--video", type=Path, help="stream this face video instead of the generated 640x480 one")
    p.add_argument("--url", help="load this running server (http[s]://HOST:PORT) instead of starting one: the e2e "
                                 "stream levels, as its clients see them (results go to OUT/<mode>-remote)")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _done(results: dict[str, dict], name: str) -> dict | None:
    """A benchmark's result when it ran to the end (not failed, not skipped)."""
    r = results.get(name)
    return r if r is not None and "error" not in r and "skipped" not in r else None


def service_floor_ms(pipe: dict, floor: dict | None) -> tuple[float, str] | None:
    """The CPU one answered stream frame cannot do without, on this machine: decoding the JPEG, finding the face
    (detect-then-track, amortised), cropping, the student's encoder and head in a batch of 32, postprocessing; from
    the pipeline and floor benchmarks. (ms, how it adds up)."""
    st = pipe.get("stages", {})
    parts = {"decode": st.get("decode", {}).get("median_ms"), "face": st.get("face", {}).get("mean_ms"),
             "crop": st.get("preprocess", {}).get("median_ms"),
             "postprocess": st.get("postprocess", {}).get("median_ms")}
    students = (floor or {}).get("students") or []
    batched = [s["measured_ms_per_frame"].get("32") for s in students if s.get("measured_ms_per_frame")]
    parts["student (batch 32)"] = min(batched) if batched and all(batched) else None
    if any(v is None for v in parts.values()):
        return None
    total = sum(parts.values())
    return total, " + ".join(f"{k} {v:.2f}" for k, v in parts.items())


def derived_targets(results: dict[str, dict]) -> list[dict]:
    """Targets that need two benchmarks: the service's end-to-end time per frame against the sum of the stages, and
    its CPU per answered frame at 32 streams against the floor of the work itself."""
    from benchmarks.common import target

    pipe, e2e = _done(results, "pipeline"), _done(results, "e2e")
    if not pipe or not e2e:
        return []
    out = []
    floor = service_floor_ms(pipe, _done(results, "floor"))
    at32 = next((lv for lv in e2e["levels"] if lv["streams"] == 32), None)
    if floor and at32 and at32.get("server_cpu_ms_per_answer"):
        cpu = at32["server_cpu_ms_per_answer"]
        out.append(target("32 streams: server CPU per answered frame / the floor of the work", round(cpu / floor[0], 3),
                          round(2.0 / floor[0], 3), "x", note=f"{cpu:.2f} ms against a floor of {floor[0]:.2f} ms "
                                                            f"({floor[1]} ms); the limit is 2.0 ms"))
    one = next((lv for lv in e2e["levels"] if lv["streams"] == 1), None)
    if one is None or not one["rtt_ms"]["mean"]:
        return out
    rtt, server = one["rtt_ms"]["mean"], one["server_total_ms"]["mean"]
    for label, total in (("back to back", pipe["sum_of_stages_ms"]), ("paced as a 15 fps stream",
                                                                    pipe.get("sum_of_stages_paced_ms"))):
        if total:
            out.append(target(f"1 stream through the service: mean RTT / sum of the stages measured alone, {label}",
                              rtt / total, 1.3, "x", note=f"RTT mean {rtt:.2f} ms (the server's own total "
                                                          f"{server:.2f} ms = {server / total:.2f}x), stages "
                                                          f"{total:.2f} ms"))
    return out


def url_problem(url: str) -> str | None:
    """Why `--url` cannot be loaded, or None."""
    from urllib.parse import urlparse

    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--url must be http://HOST:PORT or https://HOST:PORT, not {url!r}"
    return None


def run(args: argparse.Namespace) -> int:
    from benchmarks import plots
    from benchmarks.common import BenchContext, Skipped, load_average, machine_info, rel, write_json

    ctx = BenchContext(quick=args.quick, providers=args.providers, threads=args.threads,
                       models_dir=args.models_dir.resolve(), runs_dir=args.runs_dir.resolve(),
                       cache_dir=args.cache.resolve(), training_log=args.training_log, video=args.video, log=_log,
                       url=args.url.rstrip("/") if args.url else None)
    problem = url_problem(args.url) if args.url else None
    if ctx.url and (args.cluster or (args.only and set(args.only) != {"e2e"})):
        problem = "--url runs the e2e stream levels only (the other benchmarks start their own servers)"
    if problem:
        print(f"pkdot bench: {problem}", file=sys.stderr)
        return 2
    out = args.out / (ctx.mode + ("-cuda" if ctx.cuda else "") + ("-remote" if ctx.url else ""))
    out.mkdir(parents=True, exist_ok=True)
    names = ["e2e"] if ctx.url else args.only or (list(ON_REQUEST) if args.cluster else list(BENCHMARKS))
    machine = machine_info(ctx)
    if ctx.url:  # what ran here is the load generator; the server is elsewhere
        machine = {**machine, "role": "load generator (client); the server is " + ctx.url}
    command = "pkdot bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:])
    _log(f"pkdot bench ({ctx.mode}): {', '.join(names)} on {machine['cpu']}, {machine['cores']} cores, load average "
         f"{machine['load_average']}")
    results: dict[str, dict] = {}
    failed = []
    t_all = time.perf_counter()
    for name in names:
        module = {**BENCHMARKS, **ON_REQUEST}[name]
        _log(f"[{name}] {(module.__doc__ or '').strip().splitlines()[0]}")
        load_before = load_average()
        t0 = time.perf_counter()
        try:
            result = module.run(ctx)
        except Skipped as exc:
            _log(f"  skipped: {exc}")
            result = {"name": name, "skipped": str(exc), "targets": []}
        except Exception as exc:  # one benchmark failing must not lose the others' results
            traceback.print_exc()
            failed.append(name)
            result = {"name": name, "error": f"{type(exc).__name__}: {exc}", "targets": []}
        result.update(mode=ctx.mode, seconds=round(time.perf_counter() - t0, 1), command=command,
                      finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      machine={**machine, "load_average": load_before, "load_average_after": load_average()})
        results[name] = result
        write_json(out / f"{name}.json", result)
        if "error" not in result and "skipped" not in result:
            for line in module.table(result):
                print(f"  {line}")
        print(f"  ({result['seconds']:.0f} s, load average {load_before} -> {load_average()})", flush=True)

    ran = list(results)
    for name in [*BENCHMARKS, *ON_REQUEST]:  # a partial run (--only) keeps the folder's other results in the summary
        path = out / f"{name}.json"
        if name not in results and path.is_file():
            results[name] = json.loads(path.read_text())
    figures = []
    title = f"{machine['cpu'].split(' (')[0]}, {machine['cores']} cores, {ctx.mode} mode, {ctx.providers}"
    if _done(results, "e2e"):
        figures.append(plots.latency_cdf(results["e2e"], out / "latency_cdf.png", f"RTT per frame, 15 fps streams; "
                                                                                    f"{title}"))
        figures.append(plots.throughput(results["e2e"], _done(results, "batching"), out / "throughput_vs_streams.png",
                                        f"Throughput vs concurrent streams; {title}"))
    if _done(results, "model"):
        figures.append(plots.model_latency(results["model"], out / "model_latency.png", f"Models, batch 1; {title}"))

    targets = [dict(t, benchmark=name) for name, r in results.items() for t in r.get("targets", [])]
    targets += [dict(t, benchmark="pipeline+e2e") for t in derived_targets(results)]
    summary = {"mode": ctx.mode, "command": command, "machine": machine, "load_average_end": load_average(),
               "seconds": round(time.perf_counter() - t_all, 1), "ran": ran,
               "benchmarks": {n: {"seconds": r.get("seconds"), "finished": r.get("finished"),
                                  "command": r.get("command"), "load_average": r.get("machine", {}).get("load_average")}
                              for n, r in results.items()},
               "failed": failed, "skipped": {n: r["skipped"] for n, r in results.items() if "skipped" in r},
               "targets": targets, "files": [rel(out / f"{n}.json") for n in results]
               + [rel(f) for f in figures]}
    write_json(out / "summary.json", summary)
    print(f"\ntargets ({ctx.mode} mode, {summary['seconds']:.0f} s, load average {machine['load_average']} -> "
          f"{summary['load_average_end']}):")
    for t in targets:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
        value = "not measured" if t["value"] is None else f"{t['value']:g} {t['unit']}"
        print(f"  {mark} {t['target']}: {value} (target {t['comparison']} {t['limit']:g} {t['unit']})"
              + (f" - {t['note']}" if t["note"] else ""))
    print(f"results: {rel(out)}")
    return 1 if failed else 0
