"""PKDOT inference service: FastAPI + ONNX Runtime + MediaPipe. Never imports torch or `training`."""

import os

# ONNX Runtime builds with telemetry queue events in ~/.cache/Microsoft/DeveloperTools and send them to Microsoft.
# A service that sees patients' faces sends nothing anywhere and writes nothing to disk: switch it off before
# onnxruntime is first imported (it reads the variable once, at load). Set ORT_DISABLE_TELEMETRY=0 to opt back in.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
