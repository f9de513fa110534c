"""The log-variable engine (spec §3): the exact change of variables a = u + v, b = u − v.

With G(t) = ∫_0^t g(w(s)) ds, a(t) = a(0) e^{−G}, b(t) = b(0) e^{+G} and w = (a² − b²)/4, so the whole
gradient flow is the p-dimensional ODE G' = g(w(G)) with

    w_i(G) = exp(2 log α + log((ū_i + v̄_i)²/4) − 2 G_i) − exp(2 log α + log((ū_i − v̄_i)²/4) + 2 G_i),

which never underflows: α enters only through log α, so α = 1e-100 or 1e-300 are fine.
Derived in chapter 2 (``ch-small-init``); it is the book's engine for every small-α run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp

from lrt.core.errors import LrtError
from lrt.core import checks as _checks
from lrt.diagonal.problems import DiagonalLinearRegression, DiagonalProblem, check_problem  # noqa: F401  (doctest)

__all__ = ["LogTrajectory", "log_variable_flow", "w_of_G", "LOG_METHODS"]

# A rejected trial step then gives a large finite w (|w_i| ≤ e^30 ≈ 1e13), not inf/nan. With a cap of
# 200 a bad trial step on an unbounded loss (linear regression at α = 1e-64) gave w ~ 1e87 and LSODA
# accepted it or failed; no legitimate path of the book comes near e^30. A start or an accepted step
# that reaches the cap is an error, not a silently clamped result.
_EXPONENT_CAP = 30.0

#: the scipy ``solve_ivp`` methods :func:`log_variable_flow` accepts (implicit ones get the exact Jacobian).
LOG_METHODS = ("LSODA", "BDF", "Radau", "DOP853", "RK45", "RK23")
_IMPLICIT = ("LSODA", "BDF", "Radau")


@dataclass(frozen=True)
class LogTrajectory:
    """Sampled path of the log-variable engine: ``t`` ``(T,)``, ``G`` and ``w`` ``(T, p)``, ``loss`` ``(T,)`` (None
    when the run was asked not to evaluate it); ``n_grad`` gradient and ``n_hessian`` Hessian evaluations (the
    exact Jacobian of an implicit method)."""

    t: torch.Tensor
    G: torch.Tensor
    w: torch.Tensor
    loss: torch.Tensor | None
    n_grad: int
    log_alpha: float
    n_hessian: int = 0


def _log_scales(ubar: np.ndarray, vbar: np.ndarray, log_alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The exponents 2 log α + log((ū ± v̄)²/4) of w(G) at G = 0 (−inf where ū = ∓v̄)."""
    with np.errstate(divide="ignore"):
        return 2 * log_alpha + np.log((ubar + vbar) ** 2 / 4), 2 * log_alpha + np.log((ubar - vbar) ** 2 / 4)


def w_of_G(G: np.ndarray, ubar: np.ndarray, vbar: np.ndarray, log_alpha: float) -> np.ndarray:
    """w(G) of the module docstring, for G of shape ``(..., p)``; exponents capped at 30.

    Defined in :ref:`ch-small-init`.
    """
    log_a2, log_b2 = _log_scales(ubar, vbar, log_alpha)
    return np.exp(np.minimum(log_a2 - 2 * G, _EXPONENT_CAP)) - np.exp(np.minimum(log_b2 + 2 * G, _EXPONENT_CAP))


def log_variable_flow(
    problem: DiagonalProblem,
    ubar,
    vbar,
    *,
    log_alpha: float,
    t_end: float,
    n_eval: int | None = 401,
    method: str = "LSODA",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    loss: bool = True,
) -> LogTrajectory:
    """Gradient flow from u(0) = α ū, v(0) = α v̄, integrated in the log variables G.

    Exact for every α whose start |w_i(0)| = α² (ū_i ± v̄_i)²/4 stays below the engine's overflow guard
    e^30 ≈ 1e13 (any α < 1 with ū, v̄ of order one; α = 1e-300 is fine); a larger α is rejected, and a
    path that reaches the guard stops with an error rather than being clamped.

    Arguments:
        problem: the loss F(w) and its gradient.
        ubar, vbar: the initialisation directions, each of shape ``(p,)``.
        log_alpha: log α (< 0 for small initialisation; pass ``math.log(alpha)`` or e.g. ``-100 * math.log(10)``).
        t_end, n_eval: the path is sampled at ``n_eval`` equally spaced times in [0, t_end], or at the
            solver's own steps if ``n_eval`` is None (dense where the dynamics are fast, sparse on plateaus).
        method: a scipy ``solve_ivp`` method, one of :data:`LOG_METHODS` (LSODA: its cost barely depends
            on α); the implicit ones (LSODA, BDF, Radau) get the exact Jacobian −2 ∇²F(w) diag(|a|²/4 + |b|²/4)
            from the problem's Hessian instead of finite differences.
        rtol, atol: the solver's tolerances (finite, > 0).
        loss: evaluate F at every sample (``LogTrajectory.loss``); with False it is None (each sample costs a
            forward pass, more than the solver itself where only a few crossings of the loss are needed).

    >>> problem = DiagonalLinearRegression(torch.eye(2), torch.tensor([1.0, -1.0]))
    >>> path = log_variable_flow(problem, torch.ones(2), torch.tensor([1.0, -1.0]), log_alpha=-230.0, t_end=600.0)
    >>> path.w[-1].round(decimals=5)
    tensor([ 1., -1.])

    Defined in :ref:`ch-small-init`.
    """
    check_problem("problem", problem)
    ubar = _checks.tensor("ubar", ubar, shape=(problem.dim,)).numpy()
    vbar = _checks.tensor("vbar", vbar, shape=(problem.dim,)).numpy()
    log_alpha = _checks.log_alpha("log_alpha", log_alpha)
    t_end = _checks.positive_float("t_end", t_end)
    t_eval = None if n_eval is None else np.linspace(0.0, t_end, _checks.positive_int("n_eval", n_eval, minimum=2))
    method = _checks.choice("method", method, LOG_METHODS)
    rtol = _checks.positive_float("rtol", rtol)
    atol = _checks.positive_float("atol", atol)
    if not isinstance(loss, bool):
        raise LrtError(f"loss: expected True or False, got {loss!r}")
    log_a2, log_b2 = _log_scales(ubar, vbar, log_alpha)
    start = max(log_a2.max(), log_b2.max())
    if start >= _EXPONENT_CAP:
        limit = log_alpha - (start - _EXPONENT_CAP) / 2
        raise LrtError(
            f"log_alpha: {log_alpha!r} puts |w(0)| = α²(ū ± v̄)²/4 at e^{start:.1f}, beyond the engine's overflow "
            f"guard e^{_EXPONENT_CAP:g}; expected log_alpha < {limit:.3f} for these ū, v̄ (the engine is for small α)"
        )
    count = [0, 0]

    def rhs(_t, G):
        count[0] += 1
        w = np.exp(np.minimum(log_a2 - 2 * G, _EXPONENT_CAP)) - np.exp(np.minimum(log_b2 + 2 * G, _EXPONENT_CAP))
        return _checks.finite_gradient("log_variable_flow", problem.loss_and_grad_numpy(w)[1], w)

    def jac(_t, G):  # d/dG g(w(G)) = ∇²F(w) · diag(dw/dG), dw_i/dG_i = −2(e^{log a2 − 2G} + e^{log b2 + 2G})
        count[1] += 1
        xa, xb = log_a2 - 2 * G, log_b2 + 2 * G
        ea, eb = np.exp(np.minimum(xa, _EXPONENT_CAP)), np.exp(np.minimum(xb, _EXPONENT_CAP))
        slope = -2 * (np.where(xa < _EXPONENT_CAP, ea, 0.0) + np.where(xb < _EXPONENT_CAP, eb, 0.0))
        return problem.hessian_numpy(ea - eb) * slope

    options = {"jac": jac} if method in _IMPLICIT else {}
    sol = solve_ivp(rhs, (0.0, t_end), np.zeros(problem.dim), method=method, t_eval=t_eval, rtol=rtol, atol=atol, **options)
    if not sol.success:
        raise LrtError(f"log_variable_flow: the {method} solver failed: {sol.message}")
    G = sol.y.T.copy()
    if max((log_a2 - 2 * G).max(), (log_b2 + 2 * G).max()) >= _EXPONENT_CAP:
        raise LrtError(
            f"log_variable_flow: the path reached |w_i| ≈ e^{_EXPONENT_CAP:g} (the overflow guard) by t = {t_end!r}; "
            "the flow diverges or t_end is too long"
        )
    w = torch.from_numpy(w_of_G(G, ubar, vbar, log_alpha))
    return LogTrajectory(
        torch.from_numpy(sol.t.copy()), torch.from_numpy(G), w, problem.losses(w) if loss else None, count[0], log_alpha, count[1]
    )
