"""Service settings: one pydantic-settings class, environment prefix `PKDOT_`, read through a cached getter.

Every field can be set as an environment variable (`PKDOT_MAX_STREAMS=32`; lists and dicts as JSON,
`PKDOT_CORS_ORIGINS='["https://example.org"]'`) or, for the common ones, as a `pkdot serve` flag.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PKDOT_", extra="ignore", protected_namespaces=())

    # -- server ------------------------------------------------------------------------------------------------------
    host: str = "127.0.0.1"  # 0.0.0.0 inside containers
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)  # uvicorn worker processes; each loads every model
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"  # json: one object per line, with request_id / stream_id
    shutdown_timeout_s: float = Field(10.0, gt=0)  # graceful shutdown: streams get close 1001, then this long

    # -- models ------------------------------------------------------------------------------------------------------
    models_dir: Path = Path("models")  # one sub-folder per exported model (manifest.json inside)
    models: list[str] = []  # names of the models to load; empty: every folder under models_dir
    default_models: dict[str, str] = {}  # task -> student name used when a request names none
    teacher: Literal["auto", "on", "off"] = "auto"  # auto: load a teacher where its folder exists; off: never
    skip_broken_models: bool = False  # False: a broken folder stops start-up; True: skipped, listed in /readyz
    providers: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"  # auto: TensorRT > CUDA > CPU, as available
    require_gpu: bool = False  # readiness fails unless every model runs on a GPU provider
    warmup: bool = True  # run every graph once per batch size the batcher uses before reporting ready
    backend: Literal["onnxruntime", "triton"] = "onnxruntime"  # triton: graphs run on a Triton server, over gRPC
    triton_url: str = "127.0.0.1:8001"  # the Triton server's gRPC address (backend triton)
    triton_model_name: str = "{graph}"  # Triton model name of each graph; {model}: the folder's model name
    triton_timeout_s: float = Field(10.0, gt=0)  # one Triton call; longer: the frame fails with 503

    # -- inference ---------------------------------------------------------------------------------------------------
    # Batching: a batch is whatever waited while the graph's previous call ran (up to max_batch_size rows), plus
    # what arrives within max_batch_delay_ms of its first row. Measured on 2 CPU cores with a 112 px streaming
    # student: waiting 1-5 ms added that much latency to a single stream and no throughput at 8-16 streams, where
    # calls already gathered 2-7 rows from the queue; so the default does not wait. max_batch_size 1 turns it off.
    max_batch_size: int = Field(8, ge=1, le=256)  # rows gathered into one ONNX Runtime call, per graph
    max_batch_delay_ms: float = Field(0.0, ge=0, le=1000)  # extra wait for more rows after a batch's first
    # Streams: "batched" sends each frame's encoder and head rows through the batchers above (shared with every
    # stream and REST call); "inline" runs them in the thread that decoded the frame, one hand-off per frame (less
    # CPU and latency on CPU, measured in docs/benchmarks.md); "auto": inline for a model on the CPU, batched on a GPU
    stream_inference: Literal["auto", "batched", "inline"] = "auto"
    max_queue_rows: int = Field(1024, ge=1)  # rows waiting per graph before new work is refused with 503
    inference_threads: int = Field(2, ge=1, le=64)  # threads running ONNX Runtime calls (all graphs share them)
    ort_intra_op_threads: int = Field(1, ge=0, le=64)  # ONNX Runtime threads inside one call; 0: one per core
    preprocess_threads: int = Field(0, ge=0, le=64)  # decode/detect/crop threads, streams and REST each; 0: 1/core
    detector_workers: int = Field(2, ge=1, le=32)  # MediaPipe detectors (each is used by one thread at a time)
    face_min_score: float = Field(0.5, gt=0, lt=1)
    detect_every: int = Field(10, ge=1, le=1000)  # streams: full detection every N frames, tracking between
    track_min_score: float = Field(0.6, gt=0, le=1)  # tracking below this correlation re-detects at once
    stream_reduced_decode: bool = True  # streams: decode at half size when the face is large enough

    # -- limits ------------------------------------------------------------------------------------------------------
    max_request_bytes: int = Field(32 * MiB, ge=1024)  # a larger REST body is refused with 413 before reading it
    max_files: int = Field(64, ge=1)  # `file` parts per request (frames of a clip)
    max_image_pixels: int = Field(40_000_000, ge=1)  # refused from the header, before decoding
    max_video_seconds: float = Field(30.0, gt=0)
    max_clip_frames: int = Field(300, ge=1)  # frames of a video used after resampling to the model's frame rate
    max_streams: int = Field(16, ge=1)  # concurrent WebSocket streams; more are refused with close 1013
    max_frame_bytes: int = Field(4 * MiB, ge=1024)  # one binary WebSocket message; larger: close 1009
    max_control_bytes: int = Field(4096, ge=64)  # one text WebSocket message; larger: close 1009
    ws_auth_timeout_s: float = Field(5.0, gt=0)  # how long a stream may take to send its auth message
    max_calibration_s: float = Field(60.0, gt=0)
    default_calibration_s: float = Field(3.0, gt=0)

    # -- cluster (pkdot serve --cluster: Ray Serve) -------------------------------------------------------------------
    replica_num_cpus: float = Field(1.0, ge=0)  # Ray CPUs each replica reserves (it decodes, finds faces, runs models)
    replica_num_gpus: float = Field(0.0, ge=0)  # Ray GPUs each replica reserves; > 0 places replicas on GPU nodes only
    min_replicas: int = Field(1, ge=1, le=1000)
    max_replicas: int = Field(4, ge=1, le=1000)
    target_streams: float = Field(8.0, gt=0)  # autoscaling: open streams per replica it aims at
    target_queued_frames: float = Field(2.0, gt=0)  # autoscaling: frames waiting per replica it aims at

    # -- access ------------------------------------------------------------------------------------------------------
    api_key: SecretStr | None = None  # off by default; when set, REST needs header X-API-Key, WebSocket ?api_key=
    cors_origins: list[str] = []  # e.g. ["https://app.example.org"]; ["*"] allows any origin

    @model_validator(mode="after")
    def _replicas_in_order(self) -> Settings:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        return self

    def resolved_preprocess_threads(self) -> int:
        return self.preprocess_threads or max(os.cpu_count() or 1, 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
