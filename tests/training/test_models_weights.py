"""R3D18 state-dict parity with torchvision's r3d_18, and loading local weight files."""

from __future__ import annotations

import pytest
import torch

from training.errors import ConfigError
from training.models import R3D18, CheckpointError, R3DVisual, ResNet18, count_parameters, load_visual_weights

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")



def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": () if k == "num_batches_tracked" else (channels,) for k in BN_KEYS}


def torchvision_r3d18_keys(num_classes: int = 400) -> dict[str, tuple[int, ...]]:
    """torchvision.models.video.r3d_18's state dict, written out from its architecture (VideoResNet with
    BasicStem, BasicBlock, Conv3DSimple; layers [2, 2, 2, 2]; downsample = 1×1×1 conv + BN where stride or
    width change)."""
    keys: dict[str, tuple[int, ...]] = {"stem.0.weight": (64, 3, 3, 7, 7), **_bn("stem.1", 64)}
    blocks = [  # (name, in channels, out channels, has downsample)
        ("layer1.0", 64, 64, False),
        ("layer1.1", 64, 64, False),
        ("layer2.0", 64, 128, True),
        ("layer2.1", 128, 128, False),
        ("layer3.0", 128, 256, True),
        ("layer3.1", 256, 256, False),
        ("layer4.0", 256, 512, True),
        ("layer4.1", 512, 512, False),
    ]
    for name, c_in, c_out, downsample in blocks:
        keys[f"{name}.conv1.0.weight"] = (c_out, c_in, 3, 3, 3)
        keys.update(_bn(f"{name}.conv1.1", c_out))
        keys[f"{name}.conv2.0.weight"] = (c_out, c_out, 3, 3, 3)
        keys.update(_bn(f"{name}.conv2.1", c_out))
        if downsample:
            keys[f"{name}.downsample.0.weight"] = (c_out, c_in, 1, 1, 1)
            keys.update(_bn(f"{name}.downsample.1", c_out))
    keys["fc.weight"], keys["fc.bias"] = (num_classes, 512), (num_classes,)
    return keys


def torchvision_like_checkpoint(num_classes: int = 400) -> dict[str, torch.Tensor]:
    return {
        k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(shape)
        for k, shape in torchvision_r3d18_keys(num_classes).items()
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[dict[str, torch.Tensor], object]:
    """A torchvision-format r3d_18 state dict and the file it is saved in (written once: 133 MB)."""
    torch.manual_seed(0)
    state = torchvision_like_checkpoint()
    path = tmp_path_factory.mktemp("weights") / "r3d_18-b3b3357e.pth"
    torch.save(state, path)
    return state, path


def test_key_table_matches_torchvision_parameter_count() -> None:
    keys = torchvision_r3d18_keys()
    assert len(keys) == 122
    n_params = sum(
        torch.Size(s).numel()
        for k, s in keys.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert n_params == 33_371_472  # torchvision R3D_18_Weights.KINETICS400_V1.meta["num_params"]


def test_r3d18_state_dict_matches_torchvision() -> None:
    model = R3D18()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == torchvision_r3d18_keys()
    assert count_parameters(model) == 33_371_472


def test_r3d18_forward_shapes() -> None:
    model = R3D18(num_classes=7).eval()
    x = torch.randn(2, 3, 4, 32, 32)  # (B, 3, T, H, W)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        assert model.features(x).shape == (2, 512)


def test_load_torchvision_checkpoint(checkpoint) -> None:
    state, path = checkpoint
    model = R3D18()
    report = load_visual_weights(model, path)
    assert report.missing == report.unexpected == report.dropped == []
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], msg=k)


def test_load_nested_dataparallel_checkpoint_drops_other_classifier(checkpoint, tmp_path) -> None:
    state = checkpoint[0]
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = R3D18(num_classes=5)
    fresh_fc = model.fc.weight.detach().clone()
    report = load_visual_weights(model, path)
    assert sorted(report.dropped) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.unexpected == []
    torch.testing.assert_close(model.stem[0].weight, state["stem.0.weight"])
    torch.testing.assert_close(model.layer4[1].conv2[1].running_var, state["layer4.1.conv2.1.running_var"])
    torch.testing.assert_close(model.fc.weight, fresh_fc)  # a 5-class classifier keeps its initialisation


def test_r3d_visual_backbone_loads_weights(checkpoint) -> None:
    state, path = checkpoint
    backbone = R3DVisual(weights=path).eval()
    torch.testing.assert_close(backbone.net.layer2[0].downsample[0].weight, state["layer2.0.downsample.0.weight"])
    with torch.no_grad():
        assert backbone(torch.randn(2, 4, 3, 32, 32)).shape == (2, 512)  # clip layout (B, T, 3, H, W)


def test_wrong_shape_checkpoint_gives_clear_error(checkpoint, tmp_path) -> None:
    state = dict(checkpoint[0])
    state["layer3.0.conv1.0.weight"] = torch.randn(256, 128, 1, 3, 3)  # e.g. an R(2+1)D or MC3 file
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_visual_weights(R3D18(), path)
    message = str(info.value)
    assert (
        "layer3.0.conv1.0.weight" in message and "(256, 128, 1, 3, 3)" in message and "(256, 128, 3, 3, 3)" in message
    )
    assert isinstance(info.value, ConfigError)  # the CLI turns it into a message, not a traceback


def test_missing_and_unexpected_keys(checkpoint, tmp_path) -> None:
    state = dict(checkpoint[0])
    del state["layer4.1.conv2.0.weight"]
    state["layer5.0.conv1.0.weight"] = torch.randn(3)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): layer4.1.conv2.0.weight.*unexpected keys"):
        load_visual_weights(R3D18(), path)
    model = R3D18()
    report = load_visual_weights(model, path, strict=False)
    assert report.missing == ["layer4.1.conv2.0.weight"] and report.unexpected == ["layer5.0.conv1.0.weight"]
    torch.testing.assert_close(model.stem[0].weight, state["stem.0.weight"])


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_visual_weights(R3D18(), tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_visual_weights(R3D18(), garbage)
    not_state = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_state)
    with pytest.raises(CheckpointError, match="state dict"):
        load_visual_weights(R3D18(), not_state)


def test_resnet18_matches_torchvision_layout() -> None:
    model = ResNet18(in_channels=3, num_classes=1000)
    assert count_parameters(model) == 11_689_512  # torchvision ResNet18_Weights.IMAGENET1K_V1.meta["num_params"]
    keys = model.state_dict()
    assert tuple(keys["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(keys["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert "layer1.0.bn2.running_var" in keys and "fc.bias" in keys
