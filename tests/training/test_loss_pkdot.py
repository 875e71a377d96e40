"""PKDOT loss: value against two independent computations (geomloss, a hand-written log-domain Sinkhorn), the
invariances of the method, gradients (teacher none, student checked by finite differences) and edge cases."""

import math
import warnings

import numpy as np
import ot
import pytest
import torch
from geomloss import SamplesLoss
from scipy.special import logsumexp

from training.errors import ConfigError
from training.losses import PKDOTLoss, anchor_clouds, entropic_ot, pkdot_loss, sinkhorn_divergence
from training.losses.sinkhorn import half_squared_distances, sinkhorn_potentials

EPS = 0.01  # ε = blur² with geomloss blur = 0.1
TIGHT = {"n_iter": 20000, "tol": 1e-10}  # solver budget for exactness tests
# geomloss runs one iteration per ε-scaling step, so its own error is O(1 − scaling): measured up to 6e-5 on uniform
# clouds and ~1e-7 on anchor clouds at scaling 0.999 (2e-3 and 1e-6 at 0.99)
GEOMLOSS_SCALING = 0.999
GEOMLOSS_RTOL = 2e-4
REFERENCE_RTOL = 1e-9  # against the hand-written float64 Sinkhorn below (measured: ~1e-15)



# ---------------------------------------------------------------- independent references (numpy / geomloss)
def reference_entropic_ot(x: np.ndarray, y: np.ndarray, eps: float = EPS, n_iter: int = 20000) -> float:
    """OT_ε with C = ½‖x − y‖² and uniform weights, by log-domain Sinkhorn on the dual potentials (float64).

    f_i = −ε·LSE_j(log b_j + (g_j − C_ij)/ε),  g_j = −ε·LSE_i(log a_i + (f_i − C_ij)/ε); for x = y the symmetric
    update f ← ½(f + T(f)) (alternating updates oscillate there). Returns the regularised objective by its
    definition, ⟨π, C⟩ + ε·KL(π | a⊗b), for the plan π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε).
    """
    cost = 0.5 * ((x[:, None, :] - y[None, :, :]) ** 2).sum(axis=-1)
    n, m = cost.shape
    log_a, log_b = np.full(n, -math.log(n)), np.full(m, -math.log(m))
    f, g = np.zeros(n), np.zeros(m)
    symmetric = x is y
    for _ in range(n_iter):
        f_old = f
        if symmetric:
            f = g = 0.5 * (f - eps * logsumexp(log_b[None, :] + (g[None, :] - cost) / eps, axis=1))
        else:
            f = -eps * logsumexp(log_b[None, :] + (g[None, :] - cost) / eps, axis=1)
            g = -eps * logsumexp(log_a[:, None] + (f[:, None] - cost) / eps, axis=0)
        if np.max(np.abs(f - f_old)) < 1e-15:
            break
    log_ratio = (f[:, None] + g[None, :] - cost) / eps  # log(π_ij / (a_i b_j))
    plan = np.exp(log_a[:, None] + log_b[None, :] + log_ratio)
    return float((plan * cost).sum() + eps * (plan * log_ratio).sum())


def reference_divergence(x: np.ndarray, y: np.ndarray) -> float:
    return reference_entropic_ot(x, y) - 0.5 * reference_entropic_ot(x, x) - 0.5 * reference_entropic_ot(y, y)


def reference_clouds(teacher: np.ndarray, student: np.ndarray, k: int, anchors: str) -> tuple[np.ndarray, np.ndarray]:
    """DESIGN.md §2 written again in numpy: shifted cosine matrices, sorted anchors on the teacher, gathered rows."""

    def shifted_cosine(e: np.ndarray) -> np.ndarray:
        z = e / np.linalg.norm(e, axis=1, keepdims=True)
        a = z @ z.T
        return a - a.min()

    a_t, a_s = shifted_cosine(teacher), shifted_cosine(student)
    order = np.argsort(a_t if anchors == "bottom" else -a_t, axis=1, kind="stable")[:, : min(k, len(teacher))]
    return np.take_along_axis(a_t, order, axis=1), np.take_along_axis(a_s, order, axis=1)


def geomloss_divergence(x: np.ndarray, y: np.ndarray) -> float:
    loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(EPS), scaling=GEOMLOSS_SCALING, backend="tensorized")
    return float(loss(torch.from_numpy(x), torch.from_numpy(y)))


def embeddings(batch: int, dim: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher batch with a few clusters (like trained embeddings) and a noisy student of another width."""
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(4, dim, generator=g)
    teacher = centres[torch.randint(0, 4, (batch,), generator=g)] + torch.randn(batch, dim, generator=g)
    student = torch.cat([teacher, torch.zeros(batch, 3)], dim=1) + noise * torch.randn(batch, dim + 3, generator=g)
    return teacher.double(), student.double()


# ---------------------------------------------------------------- value
@pytest.mark.parametrize("anchors", ["bottom", "top"])
@pytest.mark.parametrize(("batch", "dim", "noise", "seed"), [(128, 64, 1.0, 0), (128, 8, 3.0, 1), (48, 32, 0.3, 2)])
def test_matches_geomloss_on_independently_built_clouds(batch, dim, noise, seed, anchors):
    teacher, student = embeddings(batch, dim, noise, seed)
    x, y = reference_clouds(teacher.numpy(), student.numpy(), k=30, anchors=anchors)
    expected = geomloss_divergence(x, y)
    value = float(pkdot_loss(teacher, student, anchors=anchors))
    assert value > 0
    assert value == pytest.approx(expected, rel=GEOMLOSS_RTOL)


def test_anchor_clouds_match_the_numpy_construction():
    teacher, student = embeddings(40, 16, 1.0, seed=3)
    for anchors in ("bottom", "top"):
        x, y = anchor_clouds(teacher, student, k=7, anchors=anchors)
        x_ref, y_ref = reference_clouds(teacher.numpy(), student.numpy(), k=7, anchors=anchors)
        np.testing.assert_allclose(x.numpy(), x_ref, atol=1e-12)
        np.testing.assert_allclose(y.numpy(), y_ref, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropic_ot_matches_hand_written_sinkhorn(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 1, (30, 5)), rng.uniform(0, 1, (40, 5)) + 0.2  # clouds of different sizes
    expected = reference_entropic_ot(x, y)
    value = float(entropic_ot(torch.from_numpy(x), torch.from_numpy(y), eps=EPS, **TIGHT))
    assert value == pytest.approx(expected, rel=REFERENCE_RTOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_sinkhorn_divergence_matches_hand_written_sinkhorn_and_geomloss(seed):
    rng = np.random.default_rng(10 + seed)
    x, y = rng.uniform(0, 1, (30, 5)), rng.uniform(0, 1, (40, 5)) + 0.2
    value = float(sinkhorn_divergence(torch.from_numpy(x), torch.from_numpy(y), eps=EPS, **TIGHT))
    assert value == pytest.approx(reference_divergence(x, y), rel=REFERENCE_RTOL)
    assert value == pytest.approx(geomloss_divergence(x, y), rel=GEOMLOSS_RTOL)


def test_dual_value_equals_the_primal_objective_of_the_plan():
    """OT_ε is evaluated through its dual; at convergence it equals ⟨π, C⟩ + ε·KL(π | α⊗β) of the Sinkhorn plan."""
    rng = np.random.default_rng(5)
    x, y = torch.from_numpy(rng.uniform(0, 1, (25, 4))), torch.from_numpy(rng.uniform(0, 1, (30, 4)))
    a, b = torch.full((25,), 1 / 25, dtype=torch.float64), torch.full((30,), 1 / 30, dtype=torch.float64)
    cost = half_squared_distances(x, y)
    f, g, err = sinkhorn_potentials(a, b, cost, eps=EPS, **TIGHT)
    plan = a[:, None] * b[None, :] * torch.exp((f[:, None] + g[None, :] - cost) / EPS)
    ab = a[:, None] * b[None, :]
    primal = (plan * cost).sum() + EPS * (plan * (plan / ab).log()).sum()
    assert err < 1e-10
    assert float(entropic_ot(x, y, eps=EPS, **TIGHT)) == pytest.approx(float(primal), rel=1e-10)
    np.testing.assert_allclose(plan.sum(0).numpy(), b.numpy(), atol=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # without ε-scaling 3000 iterations do not reach the tol
def test_eps_scaling_only_changes_the_speed():
    teacher, student = embeddings(48, 16, 1.0, seed=19)
    x, y = anchor_clouds(teacher, student)
    with_scaling = float(sinkhorn_divergence(x, y, **TIGHT))
    assert float(sinkhorn_divergence(x, y, scaling=1.0, n_iter=3000, tol=1e-10)) == pytest.approx(
        with_scaling, rel=1e-6
    )
    assert float(sinkhorn_divergence(x, y, scaling=0.9)) == pytest.approx(with_scaling, rel=1e-4)
    with pytest.raises(ConfigError, match="scaling"):
        sinkhorn_divergence(x, y, scaling=0.0)


def test_value_is_the_regularised_objective_not_pots_linear_term():
    """The trap in DESIGN.md §2: ot.sinkhorn2 returns ⟨π, C⟩ only (and its default cost has no ½)."""
    rng = np.random.default_rng(4)
    x, y = torch.from_numpy(rng.uniform(0, 1, (20, 4))), torch.from_numpy(rng.uniform(0, 1, (20, 4)))
    value = float(entropic_ot(x, y, eps=EPS, **TIGHT))
    a = torch.full((20,), 1 / 20, dtype=torch.float64)
    linear = float(ot.sinkhorn2(a, a, 0.5 * ot.dist(x, y), EPS, method="sinkhorn_log", numItermax=20000, stopThr=1e-12))
    assert value == pytest.approx(reference_entropic_ot(x.numpy(), y.numpy()), rel=REFERENCE_RTOL)
    assert abs(value - linear) > 1e-3 * abs(value)


# ---------------------------------------------------------------- invariances
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # TIGHT's 1e-10 is not reached here; the value still is
def test_zero_when_student_structure_equals_teacher():
    teacher, _ = embeddings(64, 16, 0.0, seed=5)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    scales = torch.rand(64, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.5
    assert float(pkdot_loss(teacher, teacher.clone())) == 0.0  # same values: exactly 0 (symmetric solves)
    # cosine structure is invariant to rotations and to positive per-sample scales; equal up to rounding, this is
    # the slowest case for Sinkhorn (near-identical clustered clouds): ~1e-6 at the default tolerance
    student = scales * (teacher @ rotation)
    assert abs(float(pkdot_loss(teacher, student))) < 1e-5
    assert abs(float(pkdot_loss(teacher, student, **TIGHT))) < 1e-7


def test_positive_when_structures_differ():
    teacher, student = embeddings(64, 16, 1.0, seed=6)
    assert float(pkdot_loss(teacher, student)) > 1e-3
    assert float(pkdot_loss(teacher, student, anchors="top")) > 1e-3


def test_permuting_the_batch_leaves_the_loss_unchanged():
    teacher, student = embeddings(64, 16, 1.0, seed=7)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(2))
    base = float(pkdot_loss(teacher, student, **TIGHT))
    assert float(pkdot_loss(teacher[perm], student[perm], **TIGHT)) == pytest.approx(base, rel=1e-9)


def test_anchor_order_bottom_ascending_top_descending_own_column_first():
    angles = torch.tensor([0.0, 30.0, 90.0, 180.0], dtype=torch.float64).deg2rad()
    teacher = torch.stack([angles.cos(), angles.sin()], dim=1)  # row 0 cosines: 1, 0.866, 0, -1; global min -1
    student = torch.randn(4, 3, dtype=torch.float64)
    bottom, _ = anchor_clouds(teacher, student, k=2, anchors="bottom")
    top, _ = anchor_clouds(teacher, student, k=2, anchors="top")
    c30 = math.cos(math.radians(30))
    np.testing.assert_allclose(bottom[0].numpy(), [0.0, 1.0], atol=1e-12)  # columns 3, 2: least similar first
    np.testing.assert_allclose(top[0].numpy(), [2.0, 1.0 + c30], atol=1e-12)  # columns 0 (itself), 1
    np.testing.assert_allclose(top[2].numpy(), [2.0, 1.5], atol=1e-12)  # row 2 (90°): itself, then 30° (cos 0.5)
    # each row's coordinates are ordered: ascending for bottom, descending for top
    full_bottom, _ = anchor_clouds(teacher, student, k=4, anchors="bottom")
    full_top, _ = anchor_clouds(teacher, student, k=4, anchors="top")
    assert torch.all(full_bottom.diff(dim=1) >= 0) and torch.all(full_top.diff(dim=1) <= 0)


def test_anchors_are_chosen_on_the_teacher_only():
    teacher, student = embeddings(32, 8, 1.0, seed=8)
    x1, _ = anchor_clouds(teacher, student, k=5)
    x2, _ = anchor_clouds(teacher, torch.randn_like(student), k=5)
    assert torch.equal(x1, x2)


# ---------------------------------------------------------------- gradients
def test_teacher_gets_no_gradient_and_student_does():
    teacher, student = embeddings(32, 8, 1.0, seed=9)
    teacher.requires_grad_(True)
    student.requires_grad_(True)
    pkdot_loss(teacher, student).backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().max() > 0


@pytest.mark.parametrize("anchors", ["bottom", "top"])
def test_student_gradient_matches_finite_differences(anchors):
    teacher, student = embeddings(12, 6, 1.0, seed=10)
    student.requires_grad_(True)
    pkdot_loss(teacher, student, k=5, anchors=anchors, **TIGHT).backward()
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        direction = torch.randn(student.shape, dtype=torch.float64, generator=g)
        h = 1e-5
        with torch.no_grad():
            plus = pkdot_loss(teacher, student + h * direction, k=5, anchors=anchors, **TIGHT)
            minus = pkdot_loss(teacher, student - h * direction, k=5, anchors=anchors, **TIGHT)
        numeric = float(plus - minus) / (2 * h)
        analytic = float((student.grad * direction).sum())
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    # at the default solver budget the gradient is the same to ~1e-4
    default_student = student.detach().clone().requires_grad_(True)
    pkdot_loss(teacher, default_student, k=5, anchors=anchors).backward()
    torch.testing.assert_close(default_student.grad, student.grad, rtol=1e-3, atol=1e-3 * student.grad.abs().max())


# ---------------------------------------------------------------- edge cases
def _finite_with_grad(teacher: torch.Tensor, student: torch.Tensor, **kwargs) -> float:
    student = student.clone().requires_grad_(True)
    loss = pkdot_loss(teacher, student, **kwargs)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    return loss.item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_cases_are_finite(dtype):
    g = torch.Generator().manual_seed(11)
    t, s = torch.randn(16, 8, generator=g, dtype=dtype), torch.randn(16, 8, generator=g, dtype=dtype)
    same_rows = torch.ones(16, 8, dtype=dtype)
    assert _finite_with_grad(same_rows, same_rows) == 0.0  # identical rows: every similarity 1, Ā = 0
    _finite_with_grad(same_rows, s)
    _finite_with_grad(t, same_rows)
    _finite_with_grad(t[:2], s[:2])  # B = 2
    _finite_with_grad(t[:1], s[:1])  # B = 1
    zeros = s.clone()
    zeros[::3] = 0.0  # zero vectors: cosine 0 with everything
    _finite_with_grad(t, zeros)
    _finite_with_grad(zeros, t)
    _finite_with_grad(torch.zeros_like(t), torch.zeros_like(s))


@pytest.mark.parametrize("scale", [1e-12, 1e6, 1e30])
def test_scale_invariant_for_tiny_and_huge_norms(scale):
    teacher, student = embeddings(24, 8, 1.0, seed=12)
    teacher, student = teacher.float(), student.float()
    base = _finite_with_grad(teacher, student)
    assert _finite_with_grad(scale * teacher, scale * student) == pytest.approx(base, rel=1e-5)


def test_batch_not_larger_than_k_uses_k_equal_batch():
    teacher, student = embeddings(5, 8, 1.0, seed=13)
    value = float(pkdot_loss(teacher, student, k=30))
    assert value == float(pkdot_loss(teacher, student, k=5))
    x, y = reference_clouds(teacher.numpy(), student.numpy(), k=5, anchors="bottom")
    assert x.shape == (5, 5)
    assert value == pytest.approx(geomloss_divergence(x, y), rel=GEOMLOSS_RTOL)


def test_float32_input_gives_float32_output_with_float64_accuracy():
    teacher, student = embeddings(64, 16, 1.0, seed=14)
    value32 = pkdot_loss(teacher.float(), student.float())
    assert value32.dtype == torch.float32
    x, y = reference_clouds(teacher.float().double().numpy(), student.float().double().numpy(), 30, "bottom")
    assert float(value32) == pytest.approx(geomloss_divergence(x, y), rel=GEOMLOSS_RTOL)


def test_unconverged_solver_warns():
    teacher, student = embeddings(32, 8, 1.0, seed=15)
    with pytest.warns(RuntimeWarning, match="raise n_iter"):
        pkdot_loss(teacher, student, n_iter=1, tol=1e-14)


def test_default_budget_converges_on_a_realistic_batch():
    teacher, student = embeddings(128, 64, 1.0, seed=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pkdot_loss(teacher, student)


# ---------------------------------------------------------------- module and options
def test_module_weights_the_loss_and_ignores_logits():
    teacher, student = embeddings(32, 8, 1.0, seed=17)
    module = PKDOTLoss(weight=0.6, k=10, anchors="top")
    expected = 0.6 * pkdot_loss(teacher, student, k=10, anchors="top")
    assert float(module(teacher, student, torch.randn(32, 5), torch.randn(32, 5))) == pytest.approx(float(expected))
    assert (module.k, module.eps, module.anchors) == (10, 0.01, "top")


@pytest.mark.parametrize(
    "options",
    [
        {"k": 0},
        {"k": 2.5},
        {"k": True},
        {"eps": 0.0},
        {"eps": -0.01},
        {"eps": float("nan")},
        {"anchors": "middle"},
        {"n_iter": 0},
        {"tol": -1.0},
    ],
)
def test_bad_options_raise_config_error(options):
    teacher, student = embeddings(8, 4, 1.0, seed=18)
    with pytest.raises(ConfigError):
        pkdot_loss(teacher, student, **options)
    with pytest.raises(ConfigError):
        PKDOTLoss(**options)


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match="batch sizes differ"):
        pkdot_loss(torch.randn(8, 4), torch.randn(7, 4))
    with pytest.raises(ValueError, match="batch, dim"):
        pkdot_loss(torch.randn(8), torch.randn(8))
    with pytest.raises(ValueError, match="empty"):
        pkdot_loss(torch.randn(0, 4), torch.randn(0, 4))
