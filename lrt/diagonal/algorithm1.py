"""Algorithm 1 (our reconstruction, spec §5): the α → 0 limit of gradient flow from small initialisation.

In rescaled time τ = t / log(1/α) and log variables β = −G / log(1/α), the limit alternates

* **plateaus**: w sits at a point w^k, and β moves in a straight line, β' = −g(w^k), until a
  coordinate reaches |β_i| = 1 (its |u_i|, |v_i| have grown to O(1));
* **fast phases** (zero rescaled time): starting from w^k + ε s e_{i*}, the active coordinates follow
  the sign-preserving flow w_i' = −2 |w_i| g_i(w) — gradient flow on (u, v) with u_i² = v_i², the
  α → 0 form of the conservation law — to the next plateau w^{k+1}, a KKT point of F on the orthant
  {s_i w_i ≥ 0 on the active set, w_j = 0 elsewhere}.

The fast phase is integrated in log-magnitudes r_i = log|w_i| (r_i' = −2 s_i g_i), so signs are
preserved exactly; a coordinate driven below ``zero_level`` is set to exactly 0 and leaves the flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp

from lrt.core.errors import LrtError
from lrt.core import checks as _checks
from lrt.diagonal.problems import DiagonalLinearRegression, DiagonalProblem, check_problem  # noqa: F401  (doctest)

__all__ = ["Staircase", "algorithm1"]

# The fast phase's solver tolerance; kkt_tol must stay well above the gradient noise it leaves
# (at rtol 1e-8 a 1e-11 KKT test is never met and the phase runs to its time cap).
_FAST_RTOL = 1e-10
_FAST_METHOD = "LSODA"


@dataclass(frozen=True)
class Staircase:
    """Output of :func:`algorithm1` with K stages.

    ``tau`` ``(K,)``: stage times τ_1 < … < τ_K (rescaled time of the k-th jump);
    ``w`` ``(K + 1, p)``: plateau points w^0 = 0, w^1, …, w^K (w^k holds on (τ_k, τ_{k+1}));
    ``loss`` ``(K + 1,)``: plateau losses F(w^k); ``beta`` ``(K + 1, p)``: β at the start of each plateau;
    ``activated`` ``(K,)``: the coordinate i* that starts stage k; ``converged``: whether the last plateau
    is a stationary point (all Δ_i = ∞) rather than the stage cap.
    """

    tau: torch.Tensor
    w: torch.Tensor
    loss: torch.Tensor
    beta: torch.Tensor
    activated: torch.Tensor
    converged: bool

    @property
    def n_stages(self) -> int:
        return int(self.tau.numel())

    def plateau_index(self, tau) -> torch.Tensor:
        """Index k of the plateau holding at each rescaled time in ``tau`` (right-continuous)."""
        tau = torch.as_tensor(tau, dtype=torch.float64)
        return torch.searchsorted(self.tau, tau, right=True)

    def loss_at(self, tau) -> torch.Tensor:
        """The staircase loss F(w^k) at each rescaled time in ``tau`` (same shape)."""
        return self.loss[self.plateau_index(tau)]

    def w_at(self, tau) -> torch.Tensor:
        """The plateau point at each rescaled time in ``tau``, shape ``(*tau.shape, p)``."""
        return self.w[self.plateau_index(tau)]


def _fast_phase(problem, w, signs, start, *, eps, zero_level, kkt_tol, time_cap):
    """Sign-preserving flow w_i' = −2|w_i| g_i on the non-zero active coordinates, from w + eps·s·e_start."""
    w = w.copy()
    w[start] = signs[start] * eps
    total = 0.0
    while True:
        live = np.flatnonzero(w != 0.0)
        g = problem.loss_and_grad_numpy(w)[1]
        if np.abs(g[live]).max() <= kkt_tol or total >= time_cap:
            return w, total
        s = np.sign(w[live])

        def rhs(_t, r, live=live, s=s):
            x = w.copy()
            x[live] = s * np.exp(r)
            return -2.0 * s * problem.loss_and_grad_numpy(x)[1][live]

        def vanishes(_t, r):
            return r.min() - math.log(zero_level)

        vanishes.terminal = True
        vanishes.direction = -1

        def settled(_t, r, live=live, s=s):
            x = w.copy()
            x[live] = s * np.exp(r)
            return np.abs(problem.loss_and_grad_numpy(x)[1][live]).max() - kkt_tol

        settled.terminal = True
        settled.direction = -1
        sol = solve_ivp(
            rhs, (0.0, time_cap - total), np.log(np.abs(w[live])), method=_FAST_METHOD,
            rtol=_FAST_RTOL, atol=_FAST_RTOL, events=(vanishes, settled),
        )
        if sol.status == -1:
            raise LrtError(f"algorithm1: the fast phase's solver failed: {sol.message}")
        total += sol.t[-1]
        w[live] = s * np.exp(sol.y[:, -1])
        if sol.status == 0 or sol.t_events[1].size:  # the time cap, or the KKT point
            return w, total
        w[live[np.argmin(sol.y[:, -1])]] = 0.0  # a coordinate reached zero_level: switch it off


def algorithm1(
    problem: DiagonalProblem,
    *,
    max_stages: int = 50,
    eps: float = 1e-8,
    zero_level: float = 1e-12,
    grad_tol: float = 1e-6,
    kkt_tol: float = 1e-9,
    fast_time_cap: float = 1e4,
    loss_floor: float = 1e-12,
) -> Staircase:
    """Run Algorithm 1 (our reconstruction of P1's α → 0 limit) on ``problem`` from w = 0, β = 0.

    Arguments:
        problem: the loss F(w) and its gradient (any model f = h(x; u ⊙ v)).
        max_stages: stop after this many stages even if not stationary.
        eps: size of the seed ε·s·e_{i*} that starts each fast phase (the end point must not depend on it).
        zero_level: a fast-phase coordinate with |w_i| below this is set to exactly 0.
        grad_tol: |g_i| ≤ grad_tol·‖g(0)‖_∞ counts as g_i = 0 when scheduling the next stage (round-off
            of the fast phase would otherwise produce spurious late stages).
        kkt_tol: the fast phase stops when |g_i| ≤ kkt_tol on every non-zero coordinate (keep it ≥ 1e-9:
            the fast-phase solver runs at rtol 1e-10).
        fast_time_cap: the longest fast phase (in real time); coordinates switched off at a zero-loss
            plateau decay only algebraically.
        loss_floor: a plateau with F ≤ loss_floor·F(0) is final (a zero-loss plateau: what is left of
            the gradient there is round-off, and would schedule spurious late stages).

    Returns:
        a :class:`Staircase`.

    Orthogonal design (X = I, F = ½‖w − y‖²): stage k learns the k-th largest |y_i| at τ = 1/|y_i|.

    >>> stairs = algorithm1(DiagonalLinearRegression(torch.eye(3) * 3**0.5, torch.tensor([1.0, -4.0, 2.0]) * 3**0.5))
    >>> stairs.tau
    tensor([0.2500, 0.5000, 1.0000])
    >>> stairs.w[-1].round(decimals=6)
    tensor([ 1., -4.,  2.])

    Defined in :ref:`ch-algorithm1`.
    """
    check_problem("problem", problem)
    max_stages = _checks.positive_int("max_stages", max_stages)
    eps = _checks.positive_float("eps", eps)
    zero_level = _checks.positive_float("zero_level", zero_level)
    if not zero_level < eps:
        raise LrtError(f"zero_level: expected a number below eps = {eps!r}, got {zero_level!r}")
    grad_tol = _checks.positive_float("grad_tol", grad_tol)
    kkt_tol = _checks.positive_float("kkt_tol", kkt_tol)
    fast_time_cap = _checks.positive_float("fast_time_cap", fast_time_cap)
    loss_floor = _checks.positive_float("loss_floor", loss_floor, allow_zero=True)

    p = problem.dim
    w, beta, tau = np.zeros(p), np.zeros(p), 0.0
    loss0, g0 = problem.loss_and_grad_numpy(w)
    g_floor = grad_tol * max(np.abs(g0).max(), np.finfo(float).tiny)
    taus, ws, betas, activated = [], [w.copy()], [beta.copy()], []
    converged = False
    for _ in range(max_stages):
        loss, g = problem.loss_and_grad_numpy(w)
        _checks.finite_gradient("algorithm1", g, w)
        if loss <= loss_floor * loss0:
            converged = True
            break
        g = np.where(np.abs(g) <= g_floor, 0.0, g)
        pinned = (np.abs(beta) == 1.0) & (w != 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(g < 0, (1.0 - beta) / -g, np.where(g > 0, (1.0 + beta) / g, np.inf))
        delta[pinned] = np.inf
        if not np.isfinite(delta).any():
            converged = True
            break
        start = int(np.argmin(delta))
        step = max(float(delta[start]), 0.0)
        tau += step
        beta = np.clip(beta - step * g, -1.0, 1.0)
        beta[start] = 1.0 if g[start] < 0 else -1.0
        signs = np.sign(beta)
        w, _ = _fast_phase(
            problem, w, signs, start, eps=eps, zero_level=zero_level, kkt_tol=kkt_tol, time_cap=fast_time_cap
        )
        beta[w != 0.0] = signs[w != 0.0]
        taus.append(tau)
        ws.append(w.copy())
        betas.append(beta.copy())
        activated.append(start)
    W = torch.from_numpy(np.stack(ws))
    return Staircase(
        tau=torch.tensor(taus, dtype=torch.float64),
        w=W,
        loss=problem.losses(W),
        beta=torch.from_numpy(np.stack(betas)),
        activated=torch.tensor(activated, dtype=torch.long),
        converged=converged,
    )
