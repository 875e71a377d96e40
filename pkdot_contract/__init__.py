"""What training and the service share, and neither owns: the contract at `models/`.

    manifest.py        the model folder's manifest.json: its schema, reading it, verifying its files' sha256
    tasks.py           the two tasks (pain, affect): labels, ranges, output names
    preprocessing/     frame -> model input (face detection, crop, normalisation), media decoding, biosignal and
                       audio transforms: the one implementation `pkdot prepare` caches and the service runs per request

`training` (PyTorch) writes model folders with it and `service` (ONNX Runtime) reads them with it; neither imports
the other. Nothing here imports torch, FastAPI or ONNX Runtime.
"""

__version__ = "0.1.0"
