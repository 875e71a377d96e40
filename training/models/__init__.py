"""Models of PKDOT: visual backbones, privileged encoders, fusion, teacher and students.

Every model takes face clips as (B, T, 3, H, W) float32 (ImageNet-normalised RGB) and returns a dict with at
least `embedding` (the joint embedding z that is distilled) and the task output — `logits` (pain) or `va`
(affect, in [-1, 1]) — plus `visual` / `privileged` features where the model has them.

    model = create_model("streaming_student", task="pain", num_classes=5)
    model = create_model("teacher", task="affect", visual="r3d18", visual_cfg={"weights": "r3d_18.pth"})
"""

from __future__ import annotations

import torch.nn as nn

from training.models.audio import AudioEncoder
from training.models.biosignal import BiosignalEncoder
from training.models.complexity import count_macs, count_parameters
from training.models.frame_encoder import FrameEncoder
from training.models.fusion import AttentionFusion
from training.models.heads import TASK_OUTPUT, AffectHead, PainHead, create_head
from training.models.paper_student import PaperStudent
from training.models.r3d import R3D18
from training.models.registry import build
from training.models.resnet2d import ResNet18
from training.models.streaming_student import StreamingHeadGraph, StreamingStudent
from training.models.teacher import Teacher, create_privileged_encoder
from training.models.temporal_head import TemporalHead
from training.models.tnet import TNet
from training.models.visual import R3DVisual, StreamingVisual, create_visual_backbone
from training.models.weights import CheckpointError, LoadReport, load_visual_weights, read_state_dict

MODELS: dict[str, type[nn.Module]] = {
    # whole models
    "teacher": Teacher,
    "streaming_student": StreamingStudent,
    "paper_student": PaperStudent,
    "tnet": TNet,
    # building blocks
    "frame_encoder": FrameEncoder,
    "temporal_head": TemporalHead,
    "r3d18": R3D18,
    "resnet18": ResNet18,
    "biosignal_encoder": BiosignalEncoder,
    "audio_encoder": AudioEncoder,
    "fusion": AttentionFusion,
}


def create_model(name: str, **cfg) -> nn.Module:
    """Build MODELS[name] with keyword options; unknown names or options raise ConfigError."""
    return build(MODELS, name, "model", cfg)


__all__ = [
    "MODELS",
    "TASK_OUTPUT",
    "AffectHead",
    "AttentionFusion",
    "AudioEncoder",
    "BiosignalEncoder",
    "CheckpointError",
    "FrameEncoder",
    "LoadReport",
    "PainHead",
    "PaperStudent",
    "R3D18",
    "R3DVisual",
    "ResNet18",
    "StreamingHeadGraph",
    "StreamingStudent",
    "StreamingVisual",
    "TNet",
    "Teacher",
    "TemporalHead",
    "count_macs",
    "count_parameters",
    "create_head",
    "create_model",
    "create_privileged_encoder",
    "create_visual_backbone",
    "load_visual_weights",
    "read_state_dict",
]
