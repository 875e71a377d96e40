"""Torch-free preprocessing shared by training and serving: one source of truth from frame to model input.

`training` imports these functions to build its caches and inputs; the service calls the same ones per request.
"""

from pkdot_contract.preprocessing.crop import IMAGENET_MEAN, IMAGENET_STD, CropSpec, crop_face, to_model_input
from pkdot_contract.preprocessing.face import FaceBox, FaceDetector

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CropSpec", "FaceBox", "FaceDetector", "crop_face", "to_model_input"]
