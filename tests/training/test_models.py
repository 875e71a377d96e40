"""Models: output shapes and dicts, fusion batch independence, streaming equivalence, T-Net loading, registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from training.errors import ConfigError
from training.models import (
    MODELS,
    AttentionFusion,
    AudioEncoder,
    BiosignalEncoder,
    CheckpointError,
    FrameEncoder,
    PaperStudent,
    StreamingStudent,
    Teacher,
    TemporalHead,
    TNet,
    count_macs,
    count_parameters,
    create_model,
    create_privileged_encoder,
)

B, T, S = 2, 3, 32  # batch, frames, crop size: small so the file runs in seconds on CPU



@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def clip(b: int = B, t: int = T, size: int = S) -> torch.Tensor:
    return torch.randn(b, t, 3, size, size)


def calibrate(model: nn.Module, *inputs: torch.Tensor) -> nn.Module:
    """Set BatchNorm running statistics to those of `inputs` (fresh ones make eval activations vanish), then eval."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass gives the batch statistics
    model.train()
    with torch.no_grad():
        model(*inputs)
    for m in norms:
        m.momentum = 0.1
    return model.eval()


# ---- backbones and encoders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [112, 64])
def test_frame_encoder_shapes(size: int) -> None:
    enc = FrameEncoder(out_dim=128).eval()
    assert enc(torch.randn(2, 3, size, size)).shape == (2, 128)


def test_frame_encoder_cost_budget() -> None:
    enc = FrameEncoder()
    macs = count_macs(enc, torch.randn(1, 3, 112, 112))
    assert 0.05e9 <= macs <= 0.15e9  # 0.1–0.3 GFLOP per 112×112 frame
    assert count_parameters(enc) < 3e6
    head_macs = count_macs(TemporalHead(), torch.randn(1, 16, 256))
    assert head_macs < 0.2 * macs  # per-frame cost is dominated by the encoder, even over 16 cached frames


def test_temporal_head_shapes_and_causality() -> None:
    head = TemporalHead(in_dim=32, hidden_dim=24, out_dim=40, dropout=0.0).eval()
    x = torch.randn(2, 10, 32)
    assert head(x).shape == (2, 40)
    assert head(x[:, :1]).shape == (2, 40)  # a stream's first frame
    seq = head.sequence(x)  # (B, T, H)
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 4, 32)  # the future of step 5
    torch.testing.assert_close(head.sequence(changed)[:, :6], seq[:, :6])
    assert not torch.allclose(head.sequence(changed)[:, 6:], seq[:, 6:])
    torch.testing.assert_close(head(x[:, :6]), head.output(seq[:, 5]))  # window ending at 5 == step 5 of the sequence


def test_temporal_head_reads_only_its_receptive_field() -> None:
    head = TemporalHead(in_dim=32, hidden_dim=24, out_dim=40, dropout=0.0).eval()
    assert head.receptive_field == 15
    x = torch.randn(2, 40, 32)
    full = head.output(head.sequence(x)[:, -1])  # every step computed
    torch.testing.assert_close(head(x), full, atol=1e-6, rtol=1e-5)
    changed = x.clone()
    changed[:, :25] = torch.randn(2, 25, 32)  # frames older than the receptive field
    torch.testing.assert_close(head(changed), head(x))


@pytest.mark.parametrize(
    ("name", "cfg", "shape", "dim"),
    [
        ("biosignal", {}, (B, 1, 65, 40), 512),  # scipy spectrogram nperseg 16, nfft 128 → 65 frequency bins
        ("biosignal", {"out_dim": 128}, (B, 1, 33, 90), 128),
        ("biosignal", {"kind": "raw", "in_channels": 3, "out_dim": 256}, (B, 3, 1536), 256),  # gsr, ecg, emg
        ("audio", {}, (B, 1, 64, 101), 512),  # 64 mel bins, 1 s at a 10 ms hop
    ],
)
def test_privileged_encoder_shapes(name: str, cfg: dict, shape: tuple[int, ...], dim: int) -> None:
    encoder = create_privileged_encoder(name, **cfg).eval()
    with torch.no_grad():
        assert encoder(torch.randn(shape)).shape == (B, dim)


def test_privileged_encoders_reject_wrong_layout() -> None:
    with pytest.raises(ValueError, match="expects"):
        BiosignalEncoder("spectrogram")(torch.randn(2, 65, 40))
    with pytest.raises(ValueError, match="expects"):
        AudioEncoder()(torch.randn(2, 64, 101))
    with pytest.raises(ConfigError, match="kind"):
        BiosignalEncoder("wavelet")


# ---- fusion ----------------------------------------------------------------------------------------------------


def _fusion_inputs(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 512), torch.randn(n, 512)


def test_fusion_output_and_gate() -> None:
    fusion = AttentionFusion(visual_dim=512, privileged_dim=256, dim=256, num_tokens=4, num_heads=2).eval()
    out = fusion(torch.randn(B, 512), torch.randn(B, 256))
    assert out["embedding"].shape == out["gate"].shape == (B, 256)
    assert ((out["gate"] > 0) & (out["gate"] < 1)).all()
    g, c_v, c_p = out["gate"], out["visual_context"], out["privileged_context"]
    torch.testing.assert_close(out["embedding"], g * c_v + (1 - g) * c_p)


def test_fusion_is_batch_independent() -> None:
    fusion = AttentionFusion().eval()
    v, p = _fusion_inputs()
    with torch.no_grad():
        batch = fusion(v, p)["embedding"]
        alone = torch.cat([fusion(v[i : i + 1], p[i : i + 1])["embedding"] for i in range(len(v))])
        perm = torch.randperm(len(v))
        permuted = fusion(v[perm], p[perm])["embedding"]
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(permuted, batch[perm], atol=1e-5, rtol=1e-5)


def test_legacy_fusion_mixes_the_batch() -> None:
    """Documents the released code's defect: a sample's output depends on its batch-mates."""
    fusion = AttentionFusion(legacy_batch_mixing=True).eval()
    v, p = _fusion_inputs()
    with torch.no_grad():
        batch = fusion(v, p)["embedding"]
        alone = fusion(v[:1], p[:1])["embedding"]
        other_mates = fusion(torch.cat([v[:1], torch.randn(5, 512)]), torch.cat([p[:1], torch.randn(5, 512)]))
    assert (batch[0] - alone[0]).abs().max() > 1e-3
    assert (batch[0] - other_mates["embedding"][0]).abs().max() > 1e-3


def test_fusion_rejects_bad_token_split() -> None:
    with pytest.raises(ConfigError, match="num_tokens"):
        AttentionFusion(dim=512, num_tokens=3)
    with pytest.raises(ConfigError, match="num_heads"):
        AttentionFusion(dim=512, num_tokens=4, num_heads=5)


# ---- whole models ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "num_classes", "key", "width"),
    [("pain", 5, "logits", 5), ("pain", 2, "logits", 2), ("affect", 5, "va", 2)],
)
def test_streaming_student_outputs(task: str, num_classes: int, key: str, width: int) -> None:
    model = StreamingStudent(task=task, num_classes=num_classes, frame_dim=64, embed_dim=128).eval()
    out = model(clip())
    assert out["embedding"].shape == out["visual"].shape == (B, 128)
    assert out["frame_embeddings"].shape == (B, T, 64)
    assert out[key].shape == (B, width)
    if key == "va":
        assert out["va"].abs().max() <= 1


def test_streaming_equivalence() -> None:
    """The clip forward equals the service's path: the encoder per frame, then the head on the stacked cache."""
    model = calibrate(StreamingStudent(task="pain"), clip(4, 6))
    x = clip(2, 6)
    with torch.no_grad():
        full = model(x)
        cache = torch.stack([model.encode_frames(x[:, t]) for t in range(x.shape[1])], dim=1)  # (B, T, frame_dim)
        stepwise = model.forward_embeddings(cache)
        graphs = model.export_graphs()
        exported = graphs["head"](torch.stack([graphs["encoder"](x[:, t]) for t in range(6)], dim=1))
    torch.testing.assert_close(cache, full["frame_embeddings"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stepwise["embedding"], full["embedding"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stepwise["logits"], full["logits"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(exported, full["logits"], atol=1e-5, rtol=1e-4)


TEACHER_CASES = {  # id: (task, options, privileged signal shape, output key, output width)
    "pain-spectrogram": ("pain", {}, (B, 1, 65, 40), "logits", 5),
    "pain-raw-binary": (
        "pain",
        {"privileged_cfg": {"kind": "raw", "in_channels": 3}, "num_classes": 2},
        (B, 3, 1024),
        "logits",
        2,
    ),
    "affect-audio": ("affect", {}, (B, 1, 64, 101), "va", 2),
    "pain-r3d18": ("pain", {"visual": "r3d18"}, (B, 1, 65, 40), "logits", 5),
}


@pytest.mark.parametrize(("task", "cfg", "shape", "key", "width"), TEACHER_CASES.values(), ids=TEACHER_CASES.keys())
def test_teacher_outputs(task: str, cfg: dict, shape: tuple[int, ...], key: str, width: int) -> None:
    model = Teacher(task=task, **cfg).eval()
    size = 16 if cfg.get("visual") == "r3d18" else S
    with torch.no_grad():
        out = model(clip(size=size), torch.randn(shape))
    assert out["embedding"].shape == out["gate"].shape == (B, 512)
    assert out["visual"].shape == (B, model.visual_dim) and out["privileged"].shape == (B, model.privileged_dim)
    assert out[key].shape == (B, width)
    if key == "va":
        assert out["va"].abs().max() <= 1


def test_teacher_is_batch_independent_and_trains_every_parameter() -> None:
    model = Teacher(task="pain", visual_cfg={"frame_dim": 64, "width": 0.5})
    x, s = clip(5), torch.randn(5, 1, 65, 40)
    out = model(x, s)
    out["logits"].logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in model.parameters()), "parameters without gradient (unused modules)"
    calibrate(model, x, s)
    with torch.no_grad():
        batch = model(x, s)["embedding"]
        alone = model(x[2:3], s[2:3])["embedding"]
    assert (batch[0] - batch[1]).abs().max() > 1e-3  # samples really differ
    torch.testing.assert_close(batch[2:3], alone, atol=1e-5, rtol=1e-4)


def test_paper_student_outputs_and_tnet_loading(tmp_path) -> None:
    model = calibrate(PaperStudent(task="affect", visual_cfg={"frame_dim": 64}), clip(4))
    out = model(clip())
    assert out["embedding"].shape == (B, 512) and out["va"].shape == (B, 2)
    assert out["visual"].shape == (B, 512) and out["privileged"].shape == (B, 512)

    trained = TNet(512, 512)
    path = tmp_path / "tnet.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, path)
    report = model.load_tnet(path)
    assert len(report.loaded) == len(trained.state_dict())
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(model.tnet.state_dict()[k], v)
    assert not any(p.requires_grad for p in model.tnet.parameters())
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(model(x)["privileged"], trained(model.visual(x)))

    model.load_tnet(TNet(512, 512).state_dict(), freeze=False)
    assert all(p.requires_grad for p in model.tnet.parameters())
    with pytest.raises(CheckpointError, match="shape mismatch"):
        model.load_tnet(TNet(512, 256))
    partial = TNet(512, 512).state_dict()
    del partial["net.6.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): net.6.bias"):
        model.load_tnet(partial)


def test_paper_student_gradient_reaches_visual_through_frozen_tnet() -> None:
    model = PaperStudent(task="pain", visual_cfg={"frame_dim": 64, "width": 0.5})
    model.load_tnet(TNet(512, 512))
    model(clip())["logits"].sum().backward()
    assert all(p.grad is None for p in model.tnet.parameters())
    assert all(p.grad is not None for p in model.visual.parameters())


# ---- registry --------------------------------------------------------------------------------------------------


def test_registry_builds_every_model() -> None:
    assert set(MODELS) >= {"teacher", "streaming_student", "paper_student", "tnet", "frame_encoder", "r3d18"}
    for name in MODELS:
        assert isinstance(create_model(name), nn.Module)
    assert create_model("streaming_student", task="affect").output_key == "va"


def test_registry_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("resnet50")
    with pytest.raises(ConfigError, match="invalid options"):
        create_model("tnet", in_dims=3)
    with pytest.raises(ConfigError, match="unknown task"):
        create_model("streaming_student", task="emotion")
    with pytest.raises(ConfigError, match="visual backbone"):
        create_model("teacher", visual="vit")
    with pytest.raises(ConfigError, match="privileged encoder"):
        create_model("teacher", privileged="eeg")
    with pytest.raises(ConfigError, match="invalid options for visual backbone 'r3d18'"):
        create_model("teacher", visual="r3d18", visual_cfg={"frame_dim": 64})


@pytest.mark.parametrize("width, channels", [(1.0, [16, 32, 48, 32]), (1.5, [24, 48, 72, 48]), (0.5, [8, 16, 24, 16])])
def test_width_scales_the_compact_encoder(width: float, channels: list[int]) -> None:
    student = StreamingStudent("pain", frame_dim=32, embed_dim=64, hidden_dim=32, encoder="compact", width=width)
    convs = [m for m in student.visual.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == channels
    out = student(torch.randn(2, 4, 3, 64, 64))
    assert out["logits"].shape == (2, 5)
