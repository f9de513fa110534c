"""Algorithm 1 (our reconstruction, spec §5): the α → 0 limit of gradient flow from small initialisation.

In rescaled time τ = t / log(1/α) and log variables β = −G / log(1/α), the limit alternates

* **plateaus**: w sits at a point w^k, and β moves in a straight line, β' = −g(w^k), until a
  coordinate reaches |β_i| = 1 (its |u_i|, |v_i| have grown to O(1));
* **fast phases** (zero rescaled time): starting from w^k + ε s e_{i*}, the active coordinates follow
  the sign-preserving flow w_i' = −2 |w_i| g_i(w) — gradient flow on (u, v) with u_i² = v_i², the
  α → 0 form of the conservation law — to the next plateau w^{k+1}, a KKT point of F on the face
  {s_i w_i ≥ 0 on the active set A, w_j = 0 elsewhere}.

The end of a fast phase is found structurally, not by waiting for the flow: a coordinate that the flow
switches off decays only algebraically where its gradient vanishes too, so a time cap would leave a
plateau off its KKT point (and later stages wrong). Where F is convex (the diagonal linear network),
the flow's limit is computed directly: the face's minimiser by bounded least squares, with a linear
program choosing among minimisers where they are not unique
(:meth:`~lrt.diagonal.problems.DiagonalProblem.face_minimum`). Otherwise the flow is integrated in
log-magnitudes r_i = log|w_i| (r_i' = −2 s_i g_i, signs preserved exactly; a coordinate below
``zero_level`` is set to 0) and finished by a bounded solve on the face started from it (scipy's
L-BFGS-B, then Newton on the support), accepted only if it is a KKT point within ``kkt_tol`` and the
flow is already close to it. The flow's time cap is a safeguard: a phase that reaches it is flagged and warned.
"""


from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import minimize

from lrt.core.errors import LrtError
from lrt.core import checks as _checks
from lrt.diagonal.problems import DiagonalLinearRegression, DiagonalProblem, check_problem  # noqa: F401  (doctest)

__all__ = ["Staircase", "algorithm1", "kkt_residual"]

# The fast-phase flow's solver tolerance: the flow only has to bring the point into the basin of its KKT
# point; the bounded solve that ends the phase makes the end point exact.
_FAST_RTOL = 1e-8
_FAST_METHOD = "LSODA"
# The flow runs in segments of growing length (real time) between attempts to finish it by a bounded solve.
_FIRST_SEGMENT = 10.0
# The flow is "close" to the polished KKT point when within this distance relative to max(1, |w|_∞).
_CONFIRM_TOL = 1e-3


@dataclass(frozen=True)
class Staircase:
    """Output of :func:`algorithm1` with K stages.

    ``tau`` ``(K,)``: stage times τ_1 < … < τ_K (rescaled time of the k-th jump);
    ``w`` ``(K + 1, p)``: plateau points w^0 = 0, w^1, …, w^K (w^k holds on (τ_k, τ_{k+1}));
    ``loss`` ``(K + 1,)``: plateau losses F(w^k); ``beta`` ``(K + 1, p)``: β at the start of each plateau;
    ``activated`` ``(K,)``: the coordinate i* that starts stage k;
    ``kkt`` ``(K,)`` bool: whether stage k's fast phase ended at a KKT point of F on its face (within
    ``kkt_tol``), and ``kkt_residual`` ``(K,)``: how far from one it ended (:func:`kkt_residual`);
    ``stationary``: whether the last plateau is final (no coordinate can activate, or zero loss) rather
    than the stage cap. ``converged`` is true only when every fast phase reached KKT and the last plateau
    is stationary.
    """

    tau: torch.Tensor
    w: torch.Tensor
    loss: torch.Tensor
    beta: torch.Tensor
    activated: torch.Tensor
    kkt: torch.Tensor
    kkt_residual: torch.Tensor
    stationary: bool

    @property
    def converged(self) -> bool:
        return self.stationary and bool(self.kkt.all())

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


def kkt_residual(g: np.ndarray, w: np.ndarray, face: np.ndarray, signs: np.ndarray) -> float:
    """Distance from the KKT conditions of min F on the face {w_j = 0 off ``face``; s_i w_i ≥ 0 on it}:
    the largest of |g_i| where w_i ≠ 0 and of −s_i g_i where w_i = 0 on the face (0 at a KKT point).

    Defined in :ref:`ch-algorithm1`.
    """
    on, off = face & (w != 0.0), face & (w == 0.0)
    parts = [np.abs(g[on]), np.maximum(-signs[off] * g[off], 0.0)]
    return float(max((x.max() for x in parts if x.size), default=0.0))


def _flow(problem, w, zero_level, duration):
    """The sign-preserving flow w_i' = −2|w_i| g_i on the non-zero coordinates of ``w`` for ``duration``
    (real time), switching off each coordinate that falls below ``zero_level``. Returns (w, elapsed)."""
    w = w.copy()
    elapsed = 0.0
    while elapsed < duration:
        live = np.flatnonzero(w != 0.0)
        if live.size == 0:
            break
        s = np.sign(w[live])

        def rhs(_t, r, live=live, s=s):
            x = w.copy()
            x[live] = s * np.exp(r)
            return -2.0 * s * problem.loss_and_grad_numpy(x)[1][live]

        def jac(_t, r, live=live, s=s):  # ∂r_i'/∂r_j = −2 s_i H_ij s_j |w_j|
            x = w.copy()
            x[live] = s * np.exp(r)
            return -2.0 * problem.hessian_numpy(x)[np.ix_(live, live)] * np.outer(s, s * np.exp(r))

        def vanishes(_t, r):
            return r.min() - math.log(zero_level)

        vanishes.terminal = True
        vanishes.direction = -1
        r0 = np.log(np.abs(w[live]))
        settings = dict(rtol=_FAST_RTOL, atol=_FAST_RTOL, events=vanishes)
        try:
            sol = solve_ivp(rhs, (0.0, duration - elapsed), r0, method=_FAST_METHOD, jac=jac, **settings)
        except ValueError:  # the event's root bracket lost its sign change in LSODA's interpolant: use Radau's
            sol = solve_ivp(rhs, (0.0, duration - elapsed), r0, method="Radau", jac=jac, **settings)
        if sol.status == -1:
            raise LrtError(f"algorithm1: the fast phase's solver failed: {sol.message}")
        elapsed += sol.t[-1]
        w[live] = s * np.exp(sol.y[:, -1])
        if sol.status == 1:  # a coordinate reached zero_level: switch it off
            w[live[np.argmin(sol.y[:, -1])]] = 0.0
    return w, elapsed


def _polish(problem, w, face, signs, kkt_tol):
    """A KKT point of F on the face near ``w``: L-BFGS-B with the face's bounds, then Newton on the support."""
    bounds = [((0.0, None) if signs[i] > 0 else (None, 0.0)) if face[i] else (0.0, 0.0) for i in range(w.size)]
    res = minimize(
        problem.loss_and_grad_numpy, w, jac=True, method="L-BFGS-B", bounds=bounds,
        options={"ftol": 0.0, "gtol": 1e-3 * kkt_tol, "maxiter": 2000},
    )
    x = np.where(face & (signs * res.x > 0), res.x, 0.0)
    for _ in range(20):
        support = np.flatnonzero(x != 0.0)
        g = problem.loss_and_grad_numpy(x)[1]
        if support.size == 0 or np.abs(g[support]).max() <= 1e-3 * kkt_tol:
            break
        H = problem.hessian_numpy(x)[np.ix_(support, support)]
        step = np.linalg.lstsq(H, g[support], rcond=None)[0]
        new = x[support] - step
        if np.any(signs[support] * new <= 0):
            break
        x[support] = new
    return x


def _fast_phase(problem, w, signs, start, *, eps, zero_level, kkt_tol, time_cap):
    """The next plateau from w^k, activating ``start``: (w^{k+1}, its KKT residual, whether within kkt_tol)."""
    face = w != 0.0
    face[start] = True
    exact = problem.face_minimum(face, signs, start)
    if exact is not None:  # convex on the face: the flow's limit, computed directly
        res = kkt_residual(problem.loss_and_grad_numpy(exact)[1], exact, face, signs)
        if res <= kkt_tol:
            return exact, res, True
    x = w.copy()
    x[start] = signs[start] * eps
    elapsed, segment = 0.0, _FIRST_SEGMENT
    while True:
        duration = min(segment, time_cap - elapsed)
        x, dt = _flow(problem, x, zero_level, duration)
        elapsed += dt
        candidate = _polish(problem, x, face, signs, kkt_tol)
        res = kkt_residual(problem.loss_and_grad_numpy(candidate)[1], candidate, face, signs)
        close = np.abs(candidate - x).max() <= _CONFIRM_TOL * max(1.0, np.abs(x).max())
        if res <= kkt_tol and close:
            return candidate, res, True
        if elapsed >= time_cap or dt < duration:  # the time cap, or every coordinate switched off
            return x, kkt_residual(problem.loss_and_grad_numpy(x)[1], x, face, signs), False
        segment *= 10.0


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

    Each fast phase ends at a KKT point of F on its face {s_i w_i ≥ 0 on the active set; 0 elsewhere}
    (see the module docstring): a coordinate it drives to zero leaves the active set, its β_i = ±1 then
    moves inward, and it may re-activate later with either sign. A phase that reaches ``fast_time_cap``
    without a KKT point is flagged in ``Staircase.kkt`` and warned about (RuntimeWarning).

    Arguments:
        problem: the loss F(w) and its gradient (any model f = h(x; u ⊙ v)).
        max_stages: stop after this many stages even if not stationary.
        eps: size of the seed ε·s·e_{i*} that starts each fast-phase flow (the end point must not depend on it).
        zero_level: a fast-phase coordinate with |w_i| below this is set to exactly 0.
        grad_tol: |g_i| ≤ grad_tol·‖g(0)‖_∞ counts as g_i = 0 when scheduling the next stage (round-off
            of the fast phase would otherwise produce spurious late stages).
        kkt_tol: a plateau is accepted when its KKT residual (:func:`kkt_residual`) is at most this.
        fast_time_cap: the longest fast-phase flow (in real time): a safeguard, not the exit.
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
    >>> stairs.kkt.tolist(), stairs.converged
    ([True, True, True], True)

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
    taus, ws, betas, activated, kkt, residuals = [], [w.copy()], [beta.copy()], [], [], []
    stationary = False
    for _ in range(max_stages):
        loss, g = problem.loss_and_grad_numpy(w)
        _checks.finite_gradient("algorithm1", g, w)
        if loss <= loss_floor * loss0:
            stationary = True
            break
        g = np.where(np.abs(g) <= g_floor, 0.0, g)
        pinned = (np.abs(beta) == 1.0) & (w != 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(g < 0, (1.0 - beta) / -g, np.where(g > 0, (1.0 + beta) / g, np.inf))
        delta[pinned] = np.inf
        if not np.isfinite(delta).any():
            stationary = True
            break
        start = int(np.argmin(delta))
        step = max(float(delta[start]), 0.0)
        tau += step
        beta = np.clip(beta - step * g, -1.0, 1.0)
        beta[start] = 1.0 if g[start] < 0 else -1.0
        signs = np.sign(beta)
        w, residual, reached = _fast_phase(
            problem, w, signs, start, eps=eps, zero_level=zero_level, kkt_tol=kkt_tol, time_cap=fast_time_cap
        )
        if not reached:
            warnings.warn(
                f"algorithm1: the fast phase of stage {len(taus) + 1} (τ = {tau:.6g}) reached fast_time_cap = "
                f"{fast_time_cap:g} without a KKT point of F on its face (residual {residual:.1e} > kkt_tol = "
                f"{kkt_tol:g}); this plateau and the later stages are not the α → 0 limit",
                RuntimeWarning,
                stacklevel=2,
            )
        beta[w != 0.0] = signs[w != 0.0]
        taus.append(tau)
        ws.append(w.copy())
        betas.append(beta.copy())
        activated.append(start)
        kkt.append(reached)
        residuals.append(residual)
    W = torch.from_numpy(np.stack(ws))
    return Staircase(
        tau=torch.tensor(taus, dtype=torch.float64),
        w=W,
        loss=problem.losses(W),
        beta=torch.from_numpy(np.stack(betas)),
        activated=torch.tensor(activated, dtype=torch.long),
        kkt=torch.tensor(kkt, dtype=torch.bool),
        kkt_residual=torch.tensor(residuals, dtype=torch.float64),
        stationary=stationary,
    )
