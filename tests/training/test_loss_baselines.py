"""Distillation baselines: hand-computed values on tiny examples and brute-force references for the paper formulas."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from training.errors import ConfigError
from training.losses import (
    FitNetLoss,
    LogitKDLoss,
    NoKDLoss,
    PKDLoss,
    PKTLoss,
    RKDLoss,
    SMPKDLoss,
    fitnet_loss,
    kd_loss,
    pkd_loss,
    pkt_loss,
    rkd_loss,
    smpkd_loss,
)

T64 = torch.float64


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=T64)


# ---------------------------------------------------------------- none
def test_none_is_zero_on_the_student_device_and_dtype():
    zero = NoKDLoss()(rand(4, 3), rand(4, 5).float())
    assert zero.dtype == torch.float32 and float(zero) == 0.0 and not zero.requires_grad


# ---------------------------------------------------------------- kd (Hinton)
def test_kd_known_value():
    teacher = torch.tensor([[0.0, 0.0]], dtype=T64)  # p_t = (½, ½)
    student = torch.tensor([[math.log(3.0), 0.0]], dtype=T64)  # p_s = (¾, ¼)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert float(kd_loss(teacher, student, temperature=1.0)) == pytest.approx(expected, rel=1e-12)
    # T² scaling: logits twice as large at T = 2 give the same distributions, so the value is T² = 4 times larger
    assert float(kd_loss(teacher, 2 * student, temperature=2.0)) == pytest.approx(4 * expected, rel=1e-12)


def test_kd_averages_over_the_batch_and_detaches_the_teacher():
    teacher, student = rand(6, 5, seed=1).requires_grad_(True), rand(6, 5, seed=2).requires_grad_(True)
    loss = kd_loss(teacher, student, temperature=4.0)
    p_t, log_p_s = F.softmax(teacher / 4, dim=1), F.log_softmax(student / 4, dim=1)
    expected = 16 * (p_t * (p_t.log() - log_p_s)).sum(dim=1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    loss.backward()
    assert teacher.grad is None and student.grad.abs().max() > 0


def test_kd_needs_logits():
    module = LogitKDLoss()
    assert module.requires_logits and module.temperature == 4.0
    with pytest.raises(ConfigError, match="logits"):
        module(rand(4, 3), rand(4, 3))
    with pytest.raises(ConfigError, match="temperature"):
        LogitKDLoss(temperature=0)
    with pytest.raises(ValueError, match="logits"):
        module(rand(4, 3), rand(4, 3), rand(4, 5), rand(4, 2))


# ---------------------------------------------------------------- fitnet
def test_fitnet_known_value_and_regressor():
    assert float(fitnet_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))) == pytest.approx(2.5)
    same = FitNetLoss()
    assert isinstance(same.regressor, torch.nn.Identity)
    with pytest.raises(ConfigError, match="student_dim"):
        same(rand(4, 6), rand(4, 3))
    module = FitNetLoss(student_dim=3, teacher_dim=6)
    teacher, student = rand(4, 6).requires_grad_(True), rand(4, 3).float().double().requires_grad_(True)
    module.double()
    loss = module(teacher, student)
    loss.backward()
    assert teacher.grad is None and student.grad.abs().max() > 0
    assert module.regressor.weight.grad.abs().max() > 0  # the regressor trains with the student
    expected = F.mse_loss(module.regressor(student), teacher)
    assert loss.item() == pytest.approx(expected.item())
    with pytest.raises(ConfigError):
        FitNetLoss(student_dim=0, teacher_dim=3)


# ---------------------------------------------------------------- pkd (M2PKD)
def test_pkd_known_values():
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert float(pkd_loss(e1, 5 * e1)) == pytest.approx(0.0, abs=1e-7)  # scale-free
    assert float(pkd_loss(e1, e2)) == pytest.approx(1.0)  # orthogonal
    assert float(pkd_loss(e1, -e1)) == pytest.approx(2.0)  # opposite
    batch = torch.cat([e1, e1])
    assert float(PKDLoss()(batch, torch.cat([e1, e2]))) == pytest.approx(0.5)  # mean of 0 and 1
    with pytest.raises(ValueError, match="dims differ"):
        pkd_loss(rand(4, 3), rand(4, 5))


# ---------------------------------------------------------------- smpkd
def test_smpkd_known_value_and_gradient():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=T64)  # A_t = I
    student = torch.tensor([[1.0, 0.0], [2.0, 2.0]], dtype=T64, requires_grad=True)  # cos 45° off the diagonal
    loss = smpkd_loss(teacher, student)
    assert loss.item() == pytest.approx(0.5)  # ‖[[0, −1/√2], [−1/√2, 0]]‖_F / B = 1 / 2
    loss.backward()
    assert student.grad is not None and student.grad.abs().max() > 0  # unlike the released version


def test_smpkd_is_the_rms_of_the_cosine_difference():
    teacher, student = rand(7, 4, seed=3), rand(7, 6, seed=4)
    a_t = F.cosine_similarity(teacher[:, None], teacher[None], dim=2)
    a_s = F.cosine_similarity(student[:, None], student[None], dim=2)
    assert float(SMPKDLoss()(teacher, student)) == pytest.approx(float(((a_t - a_s) ** 2).mean().sqrt()), rel=1e-10)


# ---------------------------------------------------------------- rkd
def brute_force_rkd(teacher: torch.Tensor, student: torch.Tensor) -> tuple[float, float]:
    """Park et al. 2019, eq. 3-7, with explicit loops over pairs and triplets."""

    def huber(d: float) -> float:
        return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5

    n = len(teacher)
    pairs = [(i, j) for i in range(n) for j in range(n)]

    def psi_d(e: torch.Tensor) -> dict:
        dist = {(i, j): float((e[i] - e[j]).norm()) for i, j in pairs}
        mu = sum(v for (i, j), v in dist.items() if i != j) / (n * (n - 1))
        return {p: v / mu for p, v in dist.items()}

    def psi_a(e: torch.Tensor, i: int, j: int, k: int) -> float:
        if i == j or k == j:
            return 0.0
        u, v = e[i] - e[j], e[k] - e[j]
        return float(u @ v / (u.norm() * v.norm()))

    dt, ds = psi_d(teacher), psi_d(student)
    distance = sum(huber(ds[p] - dt[p]) for p in pairs) / len(pairs)
    triplets = list(itertools.product(range(n), repeat=3))
    angle = sum(huber(psi_a(student, i, j, k) - psi_a(teacher, i, j, k)) for i, j, k in triplets) / len(triplets)
    return distance, angle


def test_rkd_matches_brute_force_and_default_weights():
    teacher, student = rand(5, 3, seed=5), 3 * rand(5, 4, seed=6)
    distance, angle = brute_force_rkd(teacher, student)
    assert float(rkd_loss(teacher, student, distance_weight=1, angle_weight=0)) == pytest.approx(distance, rel=1e-9)
    assert float(rkd_loss(teacher, student, distance_weight=0, angle_weight=1)) == pytest.approx(angle, rel=1e-9)
    module = RKDLoss()
    assert (module.distance_weight, module.angle_weight) == (25.0, 50.0)
    assert float(module(teacher, student)) == pytest.approx(25 * distance + 50 * angle, rel=1e-9)


def test_rkd_is_invariant_to_scale_translation_and_rotation():
    teacher = rand(8, 4, seed=7)
    rotation, _ = torch.linalg.qr(rand(4, 4, seed=8))
    student = 7.0 * teacher @ rotation + 3.0
    assert float(rkd_loss(teacher, student)) == pytest.approx(0.0, abs=1e-9)


def test_rkd_gradient_is_finite_with_duplicate_samples():
    teacher = rand(6, 3, seed=9)
    student = rand(6, 3, seed=10)
    student[1] = student[0]
    student.requires_grad_(True)
    rkd_loss(teacher, student).backward()
    assert torch.isfinite(student.grad).all()


# ---------------------------------------------------------------- pkt
def brute_force_pkt(teacher: torch.Tensor, student: torch.Tensor) -> float:
    """Passalis & Tefas 2018 with the cosine kernel: mean over rows of KL(p^t_{·|i} ‖ p^s_{·|i})."""
    n = len(teacher)

    def probabilities(e: torch.Tensor) -> list[list[float]]:
        k = [[(float(F.cosine_similarity(e[i], e[j], dim=0)) + 1) / 2 for j in range(n)] for i in range(n)]
        return [[v / sum(row) for v in row] for row in k]

    p_t, p_s = probabilities(teacher), probabilities(student)
    return sum(p_t[i][j] * math.log(p_t[i][j] / p_s[i][j]) for i in range(n) for j in range(n)) / n


def test_pkt_matches_brute_force():
    teacher, student = rand(6, 4, seed=11), rand(6, 9, seed=12)
    value = float(PKTLoss()(teacher, student))
    assert value > 0
    assert value == pytest.approx(brute_force_pkt(teacher, student), rel=1e-5)
    assert float(pkt_loss(teacher, 2.0 * teacher)) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- shared edge cases
@pytest.mark.parametrize("loss", [pkd_loss, smpkd_loss, rkd_loss, pkt_loss])
@pytest.mark.parametrize("scale", [0.0, 1e-12, 1e6])
def test_embedding_losses_stay_finite(loss, scale):
    teacher, student = rand(6, 4, seed=13), (scale * rand(6, 4, seed=14)).requires_grad_(True)
    value = loss(teacher, student)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("loss", [pkd_loss, smpkd_loss, pkt_loss])
def test_cosine_losses_ignore_the_norms(loss):
    teacher, student = rand(6, 4, seed=15), rand(6, 4, seed=16)
    base = float(loss(teacher, student))
    assert float(loss(1e-12 * teacher, 1e6 * student)) == pytest.approx(base, rel=1e-9)
