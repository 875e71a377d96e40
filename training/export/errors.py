"""The export's error type."""

from __future__ import annotations

from training.errors import PKDOTError


class ExportError(PKDOTError):
    """An export that failed its checks (ONNX checker, numeric parity, int8 accuracy) or could not be written."""
