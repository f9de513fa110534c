"""Gradient flow and gradient descent on (u, v) for any model f = h(x; u ⊙ v).

Gradient flow ``u' = −v ⊙ g(w), v' = −u ⊙ g(w)`` is integrated by scipy's adaptive solvers
(``solve_ivp``); gradient descent is the finite-step baseline. Both return a :class:`Trajectory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.integrate import solve_ivp
from tqdm import tqdm

from lrt.core.errors import LrtError, LrtTypeError
from lrt.core import checks as _checks
from lrt.diagonal.problems import DiagonalLinearRegression, DiagonalProblem, check_problem  # noqa: F401  (doctest)

__all__ = ["Trajectory", "gradient_flow", "gradient_descent", "invariant_drift", "FLOW_METHODS", "GD_GRADIENTS"]

#: scipy methods accepted by :func:`gradient_flow` (explicit high-order first: the flow is not stiff
#: at the initialisation scales of the first chapters).
FLOW_METHODS = ("DOP853", "RK45", "Radau", "BDF", "LSODA")
#: gradients accepted by :func:`gradient_descent`.
GD_GRADIENTS = ("closed_form", "autograd")


@dataclass(frozen=True)
class Trajectory:
    """Sampled path of (u, v): ``t`` of shape ``(T,)``, ``u`` and ``v`` of shape ``(T, p)``, float64.

    ``loss`` holds F(w(t)), shape ``(T,)``; ``n_grad`` counts gradient evaluations.
    """

    t: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    loss: torch.Tensor
    n_grad: int
    method: str
    info: dict = field(default_factory=dict)

    @property
    def w(self) -> torch.Tensor:
        """The product u ⊙ v, shape ``(T, p)``."""
        return self.u * self.v

    @property
    def invariant(self) -> torch.Tensor:
        """u_i² − v_i² along the path, shape ``(T, p)``."""
        return self.u**2 - self.v**2


def _check_start(problem, u0, v0):
    check_problem("problem", problem)
    u0 = _checks.tensor("u0", u0, shape=(problem.dim,))
    v0 = _checks.tensor("v0", v0, shape=(problem.dim,))
    return u0, v0


def gradient_flow(
    problem: DiagonalProblem,
    u0,
    v0,
    *,
    t_end: float,
    n_eval: int | None = 401,
    method: str = "DOP853",
    rtol: float = 1e-10,
    atol: float | None = None,
) -> Trajectory:
    """Integrate gradient flow ``u' = −v ⊙ ∇F(u ⊙ v)``, ``v' = −u ⊙ ∇F(u ⊙ v)`` on [0, t_end].

    Arguments:
        problem: the loss F(w) and its gradient (a :class:`~lrt.diagonal.problems.DiagonalProblem`).
        u0, v0: the initialisation, each of shape ``(p,)``.
        t_end: final time (> 0); the path is sampled at ``n_eval`` equally spaced times (at the solver's
            own steps if ``n_eval`` is None).
        method: a scipy ``solve_ivp`` method, one of :data:`FLOW_METHODS`.
        rtol, atol: solver tolerances; ``atol`` defaults to ``rtol`` times the smallest
            non-zero initial magnitude, so that the O(α) initial phase is resolved.

    Returns:
        a :class:`Trajectory` with ``t`` of shape ``(n_eval,)`` (or one row per solver step).

    >>> problem = DiagonalLinearRegression(torch.eye(2), torch.tensor([1.0, -1.0]))
    >>> path = gradient_flow(problem, torch.full((2,), 0.1), torch.tensor([0.1, -0.1]), t_end=40.0)
    >>> path.w[-1].round(decimals=6)
    tensor([ 1., -1.])

    Defined in :ref:`ch-conservation`.
    """
    u0, v0 = _check_start(problem, u0, v0)
    t_end = _checks.positive_float("t_end", t_end)
    t_eval = None if n_eval is None else np.linspace(0.0, t_end, _checks.positive_int("n_eval", n_eval, minimum=2))
    method = _checks.choice("method", method, FLOW_METHODS)
    rtol = _checks.positive_float("rtol", rtol)
    y0 = torch.cat([u0, v0]).numpy()
    if atol is None:
        scale = np.abs(y0[y0 != 0]).min() if np.any(y0 != 0) else 1.0
        atol = rtol * scale
    atol = _checks.positive_float("atol", atol)
    p = problem.dim
    count = [0]

    def rhs(_t, y):
        w = y[:p] * y[p:]
        g = _checks.finite_gradient("gradient_flow", problem.loss_and_grad_numpy(w)[1], w)
        count[0] += 1
        return np.concatenate([-y[p:] * g, -y[:p] * g])

    sol = solve_ivp(rhs, (0.0, t_end), y0, method=method, t_eval=t_eval, rtol=rtol, atol=atol)
    if not sol.success:
        raise LrtError(f"gradient_flow: the {method} solver failed: {sol.message}")
    y = torch.from_numpy(sol.y.T.copy())
    u, v = y[:, :p], y[:, p:]
    return Trajectory(
        t=torch.from_numpy(sol.t.copy()),
        u=u,
        v=v,
        loss=problem.losses(u * v),
        n_grad=count[0],
        method=method,
        info={"rtol": rtol, "atol": atol},
    )


def gradient_descent(
    problem: DiagonalProblem,
    u0,
    v0,
    *,
    lr: float,
    steps: int,
    record_every: int = 1,
    progress: bool = False,
    gradient: str = "closed_form",
) -> Trajectory:
    """Full-batch gradient descent ``u ← u − lr·v ⊙ g``, ``v ← v − lr·u ⊙ g`` (simultaneous update).

    Arguments:
        problem: the loss F(w) and its gradient.
        u0, v0: the initialisation, each of shape ``(p,)``.
        lr: step size (> 0); the path is reported in flow time ``t = k·lr``.
        steps: number of steps.
        record_every: keep every this-many-th iterate (the last one is always kept).
        progress: show a tqdm progress bar.
        gradient: ``"closed_form"`` (the problem's own gradient of F, the fast path) or ``"autograd"`` (plain
            torch: autograd through L(u, v) = F(u ⊙ v) at every step, as one would write it by hand).

    Returns:
        a :class:`Trajectory` whose ``t`` holds ``k·lr`` for the kept steps k.

    >>> problem = DiagonalLinearRegression(torch.eye(1), torch.tensor([1.0]))
    >>> path = gradient_descent(problem, torch.tensor([0.5]), torch.tensor([0.5]), lr=0.1, steps=500)
    >>> round(path.w[-1].item(), 6)
    1.0

    Defined in :ref:`ch-conservation`.
    """
    u, v = _check_start(problem, u0, v0)
    lr = _checks.positive_float("lr", lr)
    steps = _checks.positive_int("steps", steps)
    record_every = _checks.positive_int("record_every", record_every)
    gradient = _checks.choice("gradient", gradient, GD_GRADIENTS)
    grads = _autograd_grads(problem) if gradient == "autograd" else _closed_form_grads(problem)
    u, v = u.numpy(), v.numpy()
    ts, us, vs, losses = [], [], [], []
    for k in tqdm(range(steps + 1), disable=not progress, desc="gradient descent"):
        value, grad_u, grad_v = grads(u, v)
        if k % record_every == 0 or k == steps:
            ts.append(k * lr)
            us.append(u)
            vs.append(v)
            losses.append(value)
        if k == steps:
            break
        _checks.finite_gradient(f"gradient_descent (step {k})", np.concatenate([grad_u, grad_v]), u * v)
        u, v = u - lr * grad_u, v - lr * grad_v
    return Trajectory(
        t=torch.tensor(ts, dtype=torch.float64), u=torch.from_numpy(np.stack(us)), v=torch.from_numpy(np.stack(vs)),
        loss=torch.tensor(losses, dtype=torch.float64), n_grad=steps + 1, method="gd", info={"lr": lr, "gradient": gradient},
    )


def _closed_form_grads(problem):
    """(L, ∂L/∂u, ∂L/∂v) from the problem's own gradient of F: ∂L/∂u = v ⊙ g, ∂L/∂v = u ⊙ g."""

    def grads(u, v):
        value, g = problem.loss_and_grad_numpy(u * v)
        return value, v * g, u * g

    return grads


def _autograd_grads(problem):
    """(L, ∂L/∂u, ∂L/∂v) by torch autograd through L(u, v) = F(u ⊙ v), as one would write it by hand."""

    def grads(u, v):
        u, v = torch.from_numpy(u).requires_grad_(True), torch.from_numpy(v).requires_grad_(True)
        loss = problem.loss(u * v)
        grad_u, grad_v = torch.autograd.grad(loss, (u, v))
        return loss.item(), grad_u.numpy(), grad_v.numpy()

    return grads


def invariant_drift(path: Trajectory) -> torch.Tensor:
    """Relative drift of the conservation law along a path, one number per coordinate.

    ``max_t |c_i(t) − c_i(0)| / max_t (u_i² + v_i²)(t)`` with ``c_i = u_i² − v_i²``: the drift is
    measured against the scale of the variables themselves, because at small α the invariant is
    O(α²) and a solver's absolute error may exceed it while being negligible for the dynamics.

    Returns:
        shape ``(p,)``, float64.

    Defined in :ref:`ch-conservation`.
    """
    if not isinstance(path, Trajectory):
        raise LrtTypeError(f"path: expected a Trajectory, got {type(path).__name__}")
    c = path.invariant
    scale = (path.u**2 + path.v**2).amax(dim=0)
    return (c - c[0]).abs().amax(dim=0) / scale
