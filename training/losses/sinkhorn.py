"""Entropic optimal transport and the debiased Sinkhorn divergence between two point clouds, solved with POT.

    OT_ε(α, β) = min_{π ∈ Π(α, β)} ⟨π, C⟩ + ε·KL(π | α⊗β),      C_ij = ½‖x_i − y_j‖²
    S_ε(α, β)  = OT_ε(α, β) − ½·OT_ε(α, α) − ½·OT_ε(β, β)

(Cuturi, NeurIPS 2013; Feydy et al., "Interpolating between Optimal Transport and MMD using Sinkhorn Divergences",
AISTATS 2019, eq. (3) and Def. 1.) This is what ``geomloss.SamplesLoss("sinkhorn", p=2, blur=√ε)`` computes.

Solver: POT's log-domain Sinkhorn (``ot.sinkhorn(..., method="sinkhorn_log")``, no underflow at ε = 0.01), with
ε-scaling: a few warm-started iterations at ε₀ = max C, ε₀·s, ε₀·s², ... (s = ``scaling``), then up to ``n_iter``
iterations at ε. Warm starts carry the dual potentials f, g, where π_ij = α_i β_j exp((f_i + g_j − C_ij)/ε) and
POT's log-scalings are u = log α + f/ε, v = log β + g/ε. Clustered clouds (trained embeddings) otherwise need tens
of thousands of iterations at ε = 0.01.

Value: the regularised objective, evaluated through its dual (Feydy et al., eq. 7; Peyré & Cuturi, Prop. 4.4)

    OT_ε = ⟨α, f⟩ + ⟨β, g⟩ − ε·(⟨α⊗β, exp((f ⊕ g − C)/ε)⟩ − 1)

which equals ⟨π, C⟩ + ε·KL(π | α⊗β) at the optimum (strong duality; the tests check both against each other) and,
being stationary there, is off only to second order in the solver residual, where the primal of a slightly
infeasible plan is off to first order. Two POT conventions are avoided on purpose: its default cost ‖x − y‖² has no
½ (C is built here), and ``ot.sinkhorn2`` returns only ⟨π, C⟩.

Gradient (envelope theorem / Danskin): the potentials are solved on a detached cost and held fixed, so the gradient
of the value w.r.t. C is the plan π — exact at convergence, no backprop through the iterations (memory independent
of ``n_iter``). Use float64: the debiasing subtracts nearly equal numbers.
"""

import logging
import math
import os
import warnings

# POT loads every array backend it finds at import; only its torch backend is used here, and importing JAX or
# TensorFlow (pulled in by other packages) costs seconds and GPU probing.
for _backend in ("JAX", "TENSORFLOW", "CUPY"):
    os.environ.setdefault(f"POT_BACKEND_DISABLE_{_backend}", "1")

import ot  # noqa: E402
import torch  # noqa: E402

from training.errors import ConfigError  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_N_ITER = 2000  # iterations at the final ε at most (after ~10 per ε-scaling stage)
DEFAULT_TOL = 1e-4  # stop when ‖π^T 1 − β‖₂ < tol (POT's test, every 10 iterations); value error then ≈ 0.02·tol
DEFAULT_SCALING = 0.5  # ε-scaling ratio between stages; 1 disables ε-scaling
STAGE_ITER = 10  # iterations per intermediate ε-scaling stage


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_sinkhorn_options(eps: float, n_iter: int, tol: float, scaling: float = DEFAULT_SCALING) -> None:
    """ConfigError unless ε > 0, n_iter >= 1 is an int, tol >= 0 and 0 < scaling <= 1."""
    if not _is_number(eps) or eps <= 0:
        raise ConfigError(f"eps (the entropic regularisation ε = blur²) must be a finite number > 0, got {eps!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ConfigError(f"n_iter must be an int >= 1, got {n_iter!r}")
    if not _is_number(tol) or tol < 0:
        raise ConfigError(f"tol must be a finite number >= 0, got {tol!r}")
    if not _is_number(scaling) or not 0 < scaling <= 1:
        raise ConfigError(f"scaling (the ε-scaling ratio) must be in (0, 1], got {scaling!r}")


def half_squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C_ij = ½‖x_i − y_j‖² for x (N, k), y (M, k) — no square root, so the gradient is finite at x_i = y_j."""
    x2 = (x * x).sum(dim=1)  # (N,)
    y2 = (y * y).sum(dim=1)  # (M,)
    sq = x2[:, None] + y2[None, :] - 2.0 * (x @ y.T)  # (N, M)
    return 0.5 * sq.clamp_min(0.0)  # (N, M)


def _sinkhorn_steps(
    a: torch.Tensor,
    b: torch.Tensor,
    cost: torch.Tensor,
    eps: float,
    f: torch.Tensor,
    g: torch.Tensor,
    n: int,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``n`` POT log-domain iterations at ``eps``, warm-started from and returning the potentials f, g."""
    log_a, log_b = a.log(), b.log()  # (N,), (M,)
    _, log = ot.sinkhorn(
        a,
        b,
        cost,
        eps,
        method="sinkhorn_log",
        numItermax=n,
        stopThr=tol,
        warmstart=(log_a + f / eps, log_b + g / eps),  # (N,), (M,) POT's log-scalings u, v
        log=True,
        warn=False,
    )
    return eps * (log["log_u"] - log_a), eps * (log["log_v"] - log_b)  # (N,), (M,)


def _marginal_error(
    a: torch.Tensor, b: torch.Tensor, cost: torch.Tensor, eps: float, f: torch.Tensor, g: torch.Tensor
) -> float:
    """max(‖π 1 − a‖₂, ‖π^T 1 − b‖₂) for π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε); a float."""
    plan = torch.exp((f[:, None] + g[None, :] - cost) / eps + a.log()[:, None] + b.log()[None, :])  # (N, M)
    return float(max(torch.linalg.vector_norm(plan.sum(1) - a), torch.linalg.vector_norm(plan.sum(0) - b)))


@torch.no_grad()
def sinkhorn_potentials(
    a: torch.Tensor,
    b: torch.Tensor,
    cost: torch.Tensor,
    *,
    eps: float = 0.01,
    n_iter: int = DEFAULT_N_ITER,
    tol: float = DEFAULT_TOL,
    scaling: float = DEFAULT_SCALING,
    symmetric: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Dual potentials f (N,), g (M,) of OT_ε for weights a (N,), b (M,) and cost (N, M), and their marginal error.

    ``symmetric`` (OT_ε(α, α), a = b, C = C^T): the optimum has f = g, and alternating updates carry a slowly
    decaying oscillation there, so f and g are averaged every ``STAGE_ITER`` iterations (geomloss does the same).
    The returned error is max(‖π 1 − a‖₂, ‖π^T 1 − b‖₂) for the returned potentials.
    """
    check_sinkhorn_options(eps, n_iter, tol, scaling)
    cost = cost.detach()
    f, g = torch.zeros_like(a), torch.zeros_like(b)  # (N,), (M,)
    stage_eps = float(cost.max())
    while scaling < 1 and stage_eps > eps:  # ε-scaling: ε₀ = max C, ε₀·s, ε₀·s², ... > ε
        f, g = _sinkhorn_steps(a, b, cost, stage_eps, f, g, STAGE_ITER, 0.0)  # (N,), (M,)
        if symmetric:
            f = g = 0.5 * (f + g)  # (N,)
        stage_eps *= scaling
    if not symmetric:
        f, g = _sinkhorn_steps(a, b, cost, eps, f, g, n_iter, tol)  # (N,), (M,) POT stops at tol
        return f, g, _marginal_error(a, b, cost, eps, f, g)
    done = 0
    while True:
        f, g = _sinkhorn_steps(a, b, cost, eps, f, g, STAGE_ITER, 0.0)  # (N,), (N,)
        f = g = 0.5 * (f + g)  # (N,)
        done += STAGE_ITER
        err = _marginal_error(a, b, cost, eps, f, g)
        if err < tol or done >= n_iter:
            return f, g, err


def entropic_ot(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.01,
    n_iter: int = DEFAULT_N_ITER,
    tol: float = DEFAULT_TOL,
    scaling: float = DEFAULT_SCALING,
) -> torch.Tensor:
    """Regularised OT value OT_ε(α, β) between uniform clouds x (N, k) and y (M, k); a scalar, gradient ⟨π, ∂C⟩.

    When x and y hold the same values the symmetric solve of OT_ε(α, α) is used. A RuntimeWarning (shown once per
    setting, by Python's default filter) says when the marginal error is still >= tol after ``n_iter`` iterations;
    the value is then approximate — off by ~1e-5 relative in the slowest cases measured (near-identical clustered
    clouds), since the dual value is only second-order sensitive to the residual.
    """
    n, m = x.shape[0], y.shape[0]
    a = torch.full((n,), 1.0 / n, dtype=x.dtype, device=x.device)  # (N,) uniform weights α
    b = torch.full((m,), 1.0 / m, dtype=y.dtype, device=y.device)  # (M,) uniform weights β
    cost = half_squared_distances(x, y)  # (N, M)
    symmetric = x is y or (x.shape == y.shape and torch.equal(x.detach(), y.detach()))
    f, g, err = sinkhorn_potentials(
        a, b, cost, eps=eps, n_iter=n_iter, tol=tol, scaling=scaling, symmetric=symmetric
    )  # (N,), (M,)
    if err >= tol > 0:
        logger.debug("Sinkhorn (ε=%g) stopped after %d iterations with marginal error %.2e", eps, n_iter, err)
        warnings.warn(
            f"Sinkhorn (ε={eps}) did not reach the marginal tolerance {tol:g} within n_iter={n_iter} iterations; "
            "the OT value is approximate (raise n_iter for more accuracy)",
            RuntimeWarning,
            stacklevel=2,
        )
    log_plan = (f[:, None] + g[None, :] - cost) / eps + a.log()[:, None] + b.log()[None, :]  # (N, M) log π
    mass = log_plan.exp().sum()  # () ⟨α⊗β, exp((f ⊕ g − C)/ε)⟩ = π's mass, 1 at convergence
    return (a * f).sum() + (b * g).sum() - eps * (mass - 1.0)  # () OT_ε; ∂/∂C = π


def sinkhorn_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.01,
    n_iter: int = DEFAULT_N_ITER,
    tol: float = DEFAULT_TOL,
    scaling: float = DEFAULT_SCALING,
) -> torch.Tensor:
    """Debiased Sinkhorn divergence S_ε(α, β) = OT_ε(α, β) − ½·OT_ε(α, α) − ½·OT_ε(β, β) (Feydy et al. 2019).

    ``x`` (N, k) and ``y`` (M, k) are uniform point clouds; returns a scalar that is >= 0 up to solver precision
    (not clamped, to keep its gradient) and exactly 0 when x and y hold the same values.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, k) and (M, k) point clouds, got {tuple(x.shape)} and {tuple(y.shape)}")
    options = {"eps": eps, "n_iter": n_iter, "tol": tol, "scaling": scaling}
    ot_xy = entropic_ot(x, y, **options)  # ()
    ot_xx = entropic_ot(x, x, **options)  # ()
    ot_yy = entropic_ot(y, y, **options)  # ()
    return ot_xy - 0.5 * ot_xx - 0.5 * ot_yy  # ()
