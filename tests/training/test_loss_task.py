"""Task losses (cross-entropy, 1 − CCC) and the T-Net losses (MMD with 5 Gaussian kernels, MSE)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.errors import ConfigError
from training.losses import (
    CCCLoss,
    OrdinalCrossEntropy,
    TNetLoss,
    ccc,
    ccc_loss,
    create_task_loss,
    cross_entropy_loss,
    mmd_loss,
    ordinal_targets,
    tnet_loss,
)

T64 = torch.float64


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=T64)


# ---------------------------------------------------------------- CCC
def test_ccc_of_identical_and_negated_series():
    x = rand(50)
    assert float(ccc(x, x)) == pytest.approx(1.0, abs=1e-7)
    centred = x - x.mean()
    assert float(ccc(centred, -centred)) == pytest.approx(-1.0, abs=1e-7)
    assert float(ccc(x, x + 1.0)) < 1.0  # a shift is penalised, unlike Pearson's r


def test_ccc_known_value():
    # means 2 and 4, variances 2/3 and 8/3, covariance 4/3: CCC = (8/3) / (2/3 + 8/3 + 4) = 4/11
    x, y = torch.tensor([1.0, 2.0, 3.0], dtype=T64), torch.tensor([2.0, 4.0, 6.0], dtype=T64)
    assert float(ccc(x, y)) == pytest.approx(4 / 11, rel=1e-7)


def test_ccc_per_column_against_numpy_and_accepts_arrays():
    pred, target = rand(40, 2, seed=1), rand(40, 2, seed=2) + 0.3
    values = ccc(pred, target)
    assert values.shape == (2,)
    for d in range(2):
        p, t = pred[:, d].numpy(), target[:, d].numpy()
        expected = 2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)
        assert float(values[d]) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(ccc(pred.numpy(), target.numpy()).numpy(), values.numpy())
    with pytest.raises(ValueError, match="same shape|one shape"):
        ccc(rand(5), rand(6))


def test_ccc_of_constant_series_is_finite():
    assert float(ccc(torch.ones(10), torch.ones(10))) == 0.0


def test_ccc_loss_and_module():
    target = rand(30, 2, seed=3)
    assert float(ccc_loss(target, target)) == pytest.approx(0.0, abs=1e-7)
    pred = rand(30, 2, seed=4).requires_grad_(True)
    loss = CCCLoss()(pred, target)
    assert loss.item() == pytest.approx(float((1 - ccc(pred.detach(), target)).mean()))
    loss.backward()
    assert pred.grad.abs().max() > 0
    mask = torch.arange(30) % 3 != 0  # e.g. frames annotated -5 in Aff-Wild2
    assert CCCLoss()(pred, target, mask).item() == pytest.approx(ccc_loss(pred[mask], target[mask]).item())


def test_task_losses_by_name():
    logits, labels = rand(8, 5, seed=5), torch.arange(8) % 5
    assert float(create_task_loss("pain")(logits, labels)) == pytest.approx(float(F.cross_entropy(logits, labels)))
    assert float(cross_entropy_loss(logits, labels)) == pytest.approx(float(F.cross_entropy(logits, labels)))
    assert isinstance(create_task_loss("affect"), CCCLoss)
    with pytest.raises(ConfigError):
        create_task_loss("age")
    with pytest.raises(ConfigError):
        create_task_loss("affect", ordinal_sigma=0.5)


def test_ordinal_targets_spread_to_the_neighbouring_levels():
    q = ordinal_targets(torch.tensor([0, 2, 4]), 5, 0.5)
    assert torch.allclose(q.sum(1), torch.ones(3))
    assert q.argmax(1).tolist() == [0, 2, 4]
    assert q[1, 1] == pytest.approx(float(q[1, 3])) and q[1, 1] > q[1, 0] > 0  # symmetric, falling with distance
    assert q[1, 2] == pytest.approx(1 / (1 + 2 * math.exp(-2) + 2 * math.exp(-8)))  # exp(-(k - y)^2 / 2 sigma^2)
    assert ordinal_targets(torch.tensor([2]), 5, 1.0)[0, 1] > q[1, 1]  # a wider sigma spreads further


def test_ordinal_cross_entropy():
    logits, labels = rand(8, 5, seed=6), torch.arange(8) % 5
    tight = OrdinalCrossEntropy(0.05)(logits, labels)  # sigma -> 0: the plain cross-entropy
    assert float(tight) == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-5)
    loss = create_task_loss("pain", ordinal_sigma=0.5)
    target = ordinal_targets(labels, 5, 0.5)
    best = loss(target.log(), labels)  # the soft targets themselves minimise it: their entropy
    assert float(best) == pytest.approx(float(-(target * target.log()).sum(1).mean()), rel=1e-5)
    assert float(loss(logits, labels)) > float(best)
    near, far = torch.full((1, 5), -4.0), torch.full((1, 5), -4.0)
    near[0, 3], far[0, 0] = 4.0, 4.0  # a PA4 clip called PA3, or called BL1
    pa4 = torch.tensor([4])
    assert float(loss(near, pa4)) < float(loss(far, pa4))
    assert float(F.cross_entropy(near, pa4)) == pytest.approx(float(F.cross_entropy(far, pa4)))  # CE cannot tell
    with pytest.raises(ConfigError):
        OrdinalCrossEntropy(0.0)


# ---------------------------------------------------------------- MMD / T-Net
def test_mmd_known_value_with_a_fixed_bandwidth():
    x, y = torch.tensor([[0.0]], dtype=T64), torch.tensor([[1.0]], dtype=T64)
    assert float(mmd_loss(x, y, kernel_num=1, bandwidth=1.0)) == pytest.approx(2 - 2 / math.e)
    # five kernels at σ² = {¼, ½, 1, 2, 4}: k(u, u) = 5, k(0, 1) = Σ exp(−1/σ²)
    cross = sum(math.exp(-1 / s) for s in (0.25, 0.5, 1.0, 2.0, 4.0))
    assert float(mmd_loss(x, y, bandwidth=1.0)) == pytest.approx(10 - 2 * cross)


def test_mmd_is_zero_for_equal_samples_and_grows_with_a_shift():
    x = rand(64, 8, seed=6)
    assert float(mmd_loss(x, x.clone())) == pytest.approx(0.0, abs=1e-12)
    values = [float(mmd_loss(x, rand(64, 8, seed=7) + shift)) for shift in (0.0, 0.5, 2.0)]
    assert 0 < values[0] < values[1] < values[2]


def test_mmd_median_heuristic_is_scale_free():
    x, y = rand(32, 4, seed=8), rand(32, 4, seed=9) + 0.5
    assert float(mmd_loss(1e3 * x, 1e3 * y)) == pytest.approx(float(mmd_loss(x, y)), rel=1e-9)


def test_tnet_losses_detach_the_target():
    pred, target = rand(16, 8, seed=10).requires_grad_(True), rand(16, 8, seed=11).requires_grad_(True)
    for kind in ("mmd", "mse"):
        pred.grad = None
        loss = TNetLoss(kind)(pred, target)
        loss.backward()
        assert target.grad is None and pred.grad.abs().max() > 0
    assert tnet_loss(pred, target, kind="mse").item() == pytest.approx(F.mse_loss(pred, target).item())
    assert tnet_loss(pred, target).item() == pytest.approx(mmd_loss(pred, target).item())


def test_tnet_options_are_validated():
    with pytest.raises(ConfigError):
        TNetLoss("l1")
    with pytest.raises(ConfigError):
        TNetLoss("mmd", kernel_num=0)
    with pytest.raises(ConfigError):
        TNetLoss("mmd", bandwidth=-1.0)
    with pytest.raises(ConfigError):
        tnet_loss(rand(4, 2), rand(4, 2), kind="mse", kernel_num=5)
