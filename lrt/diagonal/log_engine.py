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

__all__ = ["LogTrajectory", "log_variable_flow", "w_of_G"]

# A rejected trial step then gives a large finite w (|w_i| ≤ e^30 ≈ 1e13), not inf/nan. With a cap of
# 200 a bad trial step on an unbounded loss (linear regression at α = 1e-64) gave w ~ 1e87 and LSODA
# accepted it or failed; no legitimate path of the book comes near e^30.
_EXPONENT_CAP = 30.0


@dataclass(frozen=True)
class LogTrajectory:
    """Sampled path of the log-variable engine: ``t`` ``(T,)``, ``G`` and ``w`` ``(T, p)``, ``loss`` ``(T,)``."""

    t: torch.Tensor
    G: torch.Tensor
    w: torch.Tensor
    loss: torch.Tensor
    n_grad: int
    log_alpha: float


def w_of_G(G: np.ndarray, ubar: np.ndarray, vbar: np.ndarray, log_alpha: float) -> np.ndarray:
    """w(G) of the module docstring, for G of shape ``(..., p)``; exponents capped at 30.

    Defined in :ref:`ch-small-init`.
    """
    with np.errstate(divide="ignore"):
        log_a2 = 2 * log_alpha + np.log((ubar + vbar) ** 2 / 4)
        log_b2 = 2 * log_alpha + np.log((ubar - vbar) ** 2 / 4)
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
) -> LogTrajectory:
    """Gradient flow from u(0) = α ū, v(0) = α v̄, integrated in the log variables G (any α > 0).

    Arguments:
        problem: the loss F(w) and its gradient.
        ubar, vbar: the initialisation directions, each of shape ``(p,)``.
        log_alpha: log α (< 0 for small initialisation; pass ``math.log(alpha)`` or e.g. ``-100 * math.log(10)``).
        t_end, n_eval: the path is sampled at ``n_eval`` equally spaced times in [0, t_end], or at the
            solver's own steps if ``n_eval`` is None (dense where the dynamics are fast, sparse on plateaus).
        method, rtol, atol: scipy ``solve_ivp`` settings (LSODA: its cost barely depends on α).

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
    count = [0]

    def rhs(_t, G):
        count[0] += 1
        w = w_of_G(G, ubar, vbar, log_alpha)
        return _checks.finite_gradient("log_variable_flow", problem.loss_and_grad_numpy(w)[1], w)

    sol = solve_ivp(rhs, (0.0, t_end), np.zeros(problem.dim), method=method, t_eval=t_eval, rtol=rtol, atol=atol)
    if not sol.success:
        raise LrtError(f"log_variable_flow: the {method} solver failed: {sol.message}")
    G = sol.y.T.copy()
    w = torch.from_numpy(w_of_G(G, ubar, vbar, log_alpha))
    return LogTrajectory(torch.from_numpy(sol.t.copy()), torch.from_numpy(G), w, problem.losses(w), count[0], log_alpha)
