"""Run the inference service with uvicorn (`pkdot serve`). Flags override `PKDOT_*` environment variables."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# flag -> settings field; every other setting is read from its PKDOT_* environment variable
FLAGS = ("host", "port", "workers", "models_dir", "providers", "require_gpu", "teacher", "skip_broken_models",
         "max_batch_size", "max_batch_delay_ms", "stream_inference", "detect_every", "max_streams", "log_level",
         "log_format", "cors_origins", "inference_threads", "ort_intra_op_threads", "backend", "triton_url",
         "triton_model_name", "replica_num_cpus", "replica_num_gpus", "min_replicas", "max_replicas", "target_streams")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (default 127.0.0.1; PKDOT_HOST)")
    p.add_argument("--port", type=int, help="port (default 8000; PKDOT_PORT)")
    p.add_argument("--workers", type=int, help="worker processes, each with every model (default 1; PKDOT_WORKERS)")
    p.add_argument("--models-dir", type=Path, help="folder of exported models (default models/; PKDOT_MODELS_DIR)")
    p.add_argument("--providers", choices=["auto", "cpu", "cuda", "tensorrt"],
                   help="ONNX Runtime providers (default auto: TensorRT > CUDA > CPU; PKDOT_PROVIDERS)")
    p.add_argument("--require-gpu", action="store_true", default=None,
                   help="readiness fails unless every model runs on a GPU (PKDOT_REQUIRE_GPU)")
    p.add_argument("--teacher", choices=["auto", "on", "off"],
                   help="load teacher models: auto where a folder exists (default), on (required), off (PKDOT_TEACHER)")
    p.add_argument("--skip-broken-models", action="store_true", default=None,
                   help="leave broken model folders out (listed in /readyz) instead of refusing to start")
    p.add_argument("--max-batch-size", type=int, help="rows per ONNX Runtime call (default 8)")
    p.add_argument("--max-batch-delay-ms", type=float, help="how long a batch waits for more rows (default 0)")
    p.add_argument("--stream-inference", choices=["auto", "batched", "inline"],
                   help="streams: frames through the shared batchers, or the model run in the thread that decoded the "
                        "frame (default auto: inline on CPU, batched on GPU; PKDOT_STREAM_INFERENCE)")
    p.add_argument("--detect-every", type=int, help="streams: full face detection every N frames (default 5)")
    p.add_argument("--max-streams", type=int, help="concurrent WebSocket streams (default 16)")
    p.add_argument("--inference-threads", type=int, help="threads running ONNX Runtime calls (default 2)")
    p.add_argument("--ort-intra-op-threads", type=int, help="ONNX Runtime threads per call (default 1; 0: 1 per core)")
    p.add_argument("--cors-origins", nargs="*", help="allowed CORS origins (default none)")
    p.add_argument("--backend", choices=["onnxruntime", "triton"],
                   help="where the graphs run: onnxruntime in this process (default), or a Triton server over gRPC")
    p.add_argument("--triton-url", help="the Triton server's gRPC host:port (default 127.0.0.1:8001; PKDOT_TRITON_URL)")
    p.add_argument("--triton-model-name",
                   help="Triton model name of each graph (default {graph}; {model}: the model folder's name)")
    cluster = p.add_argument_group("cluster (Ray Serve; the cluster extra)")
    cluster.add_argument("--cluster", nargs="?", const="local", metavar="ADDRESS",
                         help="run on a Ray Serve cluster: alone, an embedded one-node Ray; 'auto', the one `ray "
                              "start` made here; HOST:PORT, the head of a remote one (docs/cluster.md)")
    cluster.add_argument("--min-replicas", type=int, help="replicas always running (default 1)")
    cluster.add_argument("--max-replicas", type=int, help="replicas autoscaling may reach (default 4)")
    cluster.add_argument("--replica-num-cpus", type=float, help="Ray CPUs per replica (default 1)")
    cluster.add_argument("--replica-num-gpus", type=float, help="Ray GPUs per replica (default 0; > 0: GPU nodes)")
    cluster.add_argument("--target-streams", type=float, help="autoscaling: open streams per replica (default 8)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "text"], help="log lines (default json)")


def run(args: argparse.Namespace) -> int:
    import json

    import uvicorn
    from pydantic import ValidationError

    from service.app import create_app
    from service.core.config import Settings
    from service.core.logging import configure_logging
    from service.server import Server, uvicorn_config, uvicorn_options

    overrides = {k: v for k, v in vars(args).items() if k in FLAGS and v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"pkdot serve: invalid settings: {problems}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if getattr(args, "cluster", None):
        from service.cluster.launch import run_cluster

        return run_cluster(settings, args.cluster)
    if settings.workers > 1:  # each worker process builds its app from the environment
        for key, value in overrides.items():
            os.environ[f"PKDOT_{key.upper()}"] = json.dumps(value) if isinstance(value, list) else str(value)
        from service.core.workers import prepare_worker_state, remove_worker_state

        state = prepare_worker_state()  # the stream limit and the metrics, shared by the workers
        try:
            # uvicorn's own workers close streams with 1012 (service restart) at shutdown, not 1001
            uvicorn.run("service.app:create_app", factory=True, workers=settings.workers,
                        **uvicorn_options(settings))
        finally:
            remove_worker_state(state)
        return 0
    app = create_app(settings)
    server = Server(uvicorn_config(app, settings), app)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when the lifespan fails (a broken model folder, logged above)
        return int(exc.code or 3)
    return 0 if server.started else 3
