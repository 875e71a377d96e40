"""Inference: model folders -> ONNX Runtime sessions -> predictions.

    runtime.py      ONNX Runtime sessions: provider choice (TensorRT > CUDA > CPU) and the provider really used
    triton.py       the same graphs on a Triton Inference Server over gRPC (backend triton; TritonGraph)
    models.py       one model folder loaded and checked against its manifest (LoadedModel, load_model)
    registry.py     every loaded model, the default student per task, the teachers (ModelRegistry)
    batching.py     cross-request micro-batching: one worker per graph (MicroBatcher)
    predictor.py    preprocess (face crop -> input) / predict (through the batchers) / postprocess (Predictor)
    privileged.py   a teacher's privileged input from an uploaded signal, as its manifest describes it
"""
