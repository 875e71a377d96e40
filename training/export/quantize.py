"""Static int8 quantisation of exported graphs, calibrated on face crops from the dataset's face-crop cache.

onnxruntime.quantization.quantize_static in the QDQ format (QuantizeLinear/DequantizeLinear pairs around
Conv/MatMul/Gemm and their Clip/Relu activations, standard ONNX ops, so the graph runs on every execution provider
and in Triton), weights int8 per output channel, activations uint8 with MinMax ranges observed on the calibration
inputs. The graph keeps its float32 inputs and outputs.

Calibration inputs come from real clips (consecutive face crops of the cache): the encoder sees their frames; the
head sees the float32 encoder's embeddings of those clips, as it would in the service; a one-graph model sees the
clips (and a teacher its privileged inputs, which the caller supplies).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pkdot_contract.preprocessing.crop import CropSpec, to_model_input
from training.export.errors import ExportError

CALIBRATION_BATCH = 8
# The layers that carry the weights, and the activations that follow them: a quantised Clip (ReLU6) or Relu is
# folded into the preceding layer's uint8 output range, so int8 tensors flow from one convolution to the next. Left
# out, every activation became DequantizeLinear -> Clip -> QuantizeLinear in float (36 round trips in the streaming
# student's encoder, which made int8 1.8x slower than fp32 at batch 1; `pkdot bench --only model`). Norms stay float.
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm", "Clip", "Relu"]


@dataclass(frozen=True)
class CalibrationData:
    """clips: uint8 (N, T, S, S, 3) runs of consecutive face crops from the face-crop cache, T = the model's window.
    privileged: a teacher's privileged inputs (N, ...) for the same samples; None for students."""

    clips: np.ndarray
    privileged: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.clips.dtype != np.uint8 or self.clips.ndim != 5 or self.clips.shape[-1] != 3 or not len(self.clips):
            raise ValueError(f"calibration clips must be uint8 (N, T, S, S, 3) with N > 0, got {self.clips.dtype} "
                             f"{self.clips.shape}")


def _reader(arrays: dict[str, np.ndarray]):
    from onnxruntime.quantization import CalibrationDataReader

    class ArrayReader(CalibrationDataReader):
        """Feeds `arrays` (one per graph input, same number of rows) in batches of CALIBRATION_BATCH."""

        def __init__(self) -> None:
            self.n = len(next(iter(arrays.values())))
            self.i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.i >= self.n:
                return None
            batch = {k: np.ascontiguousarray(v[self.i : self.i + CALIBRATION_BATCH]) for k, v in arrays.items()}
            self.i += CALIBRATION_BATCH
            return batch

        def rewind(self) -> None:
            self.i = 0

    return ArrayReader()


def calibration_inputs(graph: str, calibration: CalibrationData, spec: CropSpec,
                       fp32_graphs: dict[str, Path]) -> dict[str, np.ndarray]:
    """The calibration arrays of one graph's inputs."""
    video = to_model_input(calibration.clips, spec)  # (N, T, 3, S, S)
    n, t = video.shape[:2]
    if graph == "encoder":
        return {"frames": video.reshape(n * t, *video.shape[2:])}  # (N·T, 3, S, S)
    if graph == "head":
        from training.export.evaluate import OnnxPredictor

        encoder = OnnxPredictor({"model": fp32_graphs["encoder"]}).sessions["model"]
        frames = video.reshape(n * t, *video.shape[2:])
        emb = np.concatenate([encoder.run(["embedding"], {"frames": frames[i : i + 64]})[0]
                              for i in range(0, len(frames), 64)])  # (N·T, D)
        return {"embeddings": emb.reshape(n, t, -1)}  # (N, T, D)
    arrays = {"video": video}
    if calibration.privileged is not None:
        arrays["privileged"] = np.asarray(calibration.privileged, np.float32)
    return arrays


def quantize_graph(src: str | os.PathLike, dst: str | os.PathLike, inputs: dict[str, np.ndarray]) -> None:
    """QDQ int8 copy of the float32 graph `src` at `dst`, calibrated on `inputs`."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    ort.set_default_logger_severity(3)  # calibration sessions would log every initializer they prune
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        quantize_static(str(src), str(dst), _reader(inputs), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=QUANTIZED_OPS)
    except Exception as exc:  # onnxruntime raises plain exceptions of many types
        raise ExportError(f"int8 quantisation of {Path(src).parent.parent.name} failed: {exc}") from exc
    finally:
        root.removeFilter(_no_preprocessing_advice)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """onnxruntime advises its optimising pre-pass on every call; we skip it on purpose (it adds contrib-op opset
    imports to the graph, and torch's export has already folded BatchNorm into the convolutions)."""
    return "pre-processing" not in record.getMessage() and "pre-process" not in record.getMessage()
