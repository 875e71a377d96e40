"""PKDOT inference service: FastAPI + ONNX Runtime + MediaPipe. Never imports torch or `training`.

The packages follow a frame (docs/architecture.md):

    api/         routes only: REST, WebSocket, operations, the demo page
    streams/     a WebSocket stream: newest frame wins, control messages, calibration
    uploads/     a REST upload: multipart form, clip -> face frames, response bodies
    faces/       where the face is: the detector pool, detect-then-track
    inference/   model folders -> ONNX Runtime sessions, micro-batching, preprocess / predict / postprocess
    core/        settings, logging, metrics, errors, schemas
    client/      `pkdot stream`: a webcam or video file to /ws/stream

`app.py` assembles them (`create_app`), `context.py` holds what the lifespan loads, `server.py` and `command.py` run
it (`pkdot serve`). The model folder contract and the preprocessing come from `pkdot_contract`.
"""

import os

# ONNX Runtime builds with telemetry queue events in ~/.cache/Microsoft/DeveloperTools and send them to Microsoft.
# A service that sees patients' faces sends nothing anywhere and writes nothing to disk: switch it off before
# onnxruntime is first imported (it reads the variable once, at load). Set ORT_DISABLE_TELEMETRY=0 to opt back in.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
