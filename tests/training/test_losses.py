"""The distillation-loss registry and the interface every loss in it shares."""

import pytest
import torch

from training.errors import ConfigError
from training.losses import KD_LOSSES, KDLoss, create_kd_loss, pkdot_loss
from training.losses.pkdot import pkdot_loss as pkdot_loss_impl

B, D = 16, 8



def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(B, D, generator=g)
    return {
        "teacher_emb": teacher,
        "student_emb": teacher + torch.randn(B, D, generator=g),
        "teacher_logits": torch.randn(B, 5, generator=g),
        "student_logits": torch.randn(B, 5, generator=g),
    }


def test_registry_names_the_methods_of_the_comparison_table():
    assert set(KD_LOSSES) == {"none", "kd", "fitnet", "pkd", "smpkd", "rkd", "pkt", "pkdot"}
    assert all(issubclass(cls, KDLoss) for cls in KD_LOSSES.values())
    assert [name for name, cls in KD_LOSSES.items() if cls.requires_logits] == ["kd"]
    assert pkdot_loss is pkdot_loss_impl


@pytest.mark.parametrize("name", sorted(KD_LOSSES))
def test_every_loss_returns_a_finite_scalar_with_gradient_to_the_student_only(name):
    tensors = batch()
    for key in tensors:
        tensors[key].requires_grad_(True)
    loss = create_kd_loss(name)(**tensors)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert tensors["teacher_emb"].grad is None and tensors["teacher_logits"].grad is None
    if name == "none":
        assert loss.item() == 0.0
        return
    student_grad = tensors["student_logits" if name == "kd" else "student_emb"].grad
    assert student_grad is not None and torch.isfinite(student_grad).all() and student_grad.abs().max() > 0


@pytest.mark.parametrize("name", sorted(KD_LOSSES))
def test_every_loss_is_zero_when_the_student_copies_the_teacher(name):
    tensors = batch(1)
    tensors["student_emb"] = tensors["teacher_emb"].clone()
    tensors["student_logits"] = tensors["teacher_logits"].clone()
    assert float(create_kd_loss(name)(**tensors)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", sorted(set(KD_LOSSES) - {"none"}))
def test_weight_scales_the_loss(name):
    tensors = batch(2)
    one = float(create_kd_loss(name, weight=1.0)(**tensors))
    assert float(create_kd_loss(name, weight=2.5)(**tensors)) == pytest.approx(2.5 * one, rel=1e-5)


def test_pkdot_defaults_are_the_papers():
    loss = create_kd_loss("pkdot")
    assert (loss.weight, loss.k, loss.eps, loss.anchors) == (0.6, 30, 0.01, "bottom")


def test_none_loss_can_be_backpropagated_alone():
    tensors = batch(3)
    tensors["student_emb"].requires_grad_(True)
    loss = create_kd_loss("none")(**tensors)
    loss.backward()  # no error: a zero that requires grad
    assert loss.requires_grad and loss.item() == 0.0


def test_create_rejects_unknown_names_options_and_tasks():
    with pytest.raises(ConfigError, match="unknown distillation loss"):
        create_kd_loss("dino")
    with pytest.raises(ConfigError, match="bad option"):
        create_kd_loss("pkd", k=30)
    with pytest.raises(ConfigError, match="weight"):
        create_kd_loss("pkt", weight=-1.0)
    with pytest.raises(ConfigError, match="regression"):
        create_kd_loss("kd", task="affect")
    with pytest.raises(ConfigError, match="unknown task"):
        create_kd_loss("pkdot", task="age")
    assert create_kd_loss("kd", task="pain").requires_logits
    assert isinstance(create_kd_loss("pkdot", task="affect", k=10, anchors="top"), KDLoss)
