"""PKDOT inference service: FastAPI + ONNX Runtime + MediaPipe. Never imports torch or `training`."""

__version__ = "0.1.0"
