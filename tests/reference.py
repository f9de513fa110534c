"""Independent reference computations for the diagonal linear network (they share no code with lrt).

* :func:`limit_staircase`: the α → 0 limit (Algorithm 1) for F(w) = ‖Xw − y‖²/(2N), with each fast
  phase's end point computed as the unique minimiser of F on its sign-constrained face by scipy's
  non-negative least squares (Lawson–Hanson ``nnls`` on the sign-flipped columns).
* :func:`log_flow_crossings`: gradient flow from u(0) = α ū, v(0) = α v̄ at a given log α, integrated in
  the log variables G (G' = g(w(G))) in rescaled time, with the loss levels' first crossings found as
  solver events (no sampling grid).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import nnls


def loss_grad(X, y, w):
    r = X @ w - y
    return 0.5 * float(r @ r) / len(y), X.T @ r / len(y)


def face_minimiser(X, y, face, signs):
    """argmin F over {w_j = 0 off ``face``, s_i w_i ≥ 0 on it} (X_face of full column rank)."""
    z, _ = nnls(X[:, face] * signs[face], y)
    w = np.zeros(X.shape[1])
    w[face] = signs[face] * z
    return w


def limit_staircase(X, y, *, max_stages=60, grad_floor=1e-9, loss_floor=1e-20):
    """(tau (K,), w (K+1, p), activated (K,), faces (K, p) bool) of the α → 0 limit."""
    p = X.shape[1]
    w, beta, tau = np.zeros(p), np.zeros(p), 0.0
    loss0, g0 = loss_grad(X, y, w)
    floor = grad_floor * np.abs(g0).max()
    taus, ws, starts, faces = [], [w.copy()], [], []
    for _ in range(max_stages):
        loss, g = loss_grad(X, y, w)
        if loss <= loss_floor * loss0:
            break
        g = np.where(np.abs(g) <= floor, 0.0, g)
        delta = np.full(p, np.inf)
        for i in range(p):
            if w[i] != 0.0:
                continue
            if g[i] < 0:
                delta[i] = (1.0 - beta[i]) / -g[i]
            elif g[i] > 0:
                delta[i] = (1.0 + beta[i]) / g[i]
        if not np.isfinite(delta).any():
            break
        i = int(np.argmin(delta))
        tau += delta[i]
        beta = np.clip(beta - delta[i] * g, -1.0, 1.0)
        beta[i] = 1.0 if g[i] < 0 else -1.0
        face = (w != 0.0)
        face[i] = True
        w = face_minimiser(X, y, face, np.sign(beta))
        beta[w != 0.0] = np.sign(w[w != 0.0])
        taus.append(tau)
        ws.append(w.copy())
        starts.append(i)
        faces.append(face)
    return np.array(taus), np.array(ws), np.array(starts), np.array(faces)


def log_flow_crossings(X, y, ubar, vbar, log_alpha, levels, tau_end, rtol=1e-11, atol=1e-12):
    """Rescaled times τ at which the finite-α flow's loss first falls to each of ``levels``."""
    ell = -log_alpha
    la = 2 * log_alpha + np.log((ubar + vbar) ** 2 / 4)
    lb = 2 * log_alpha + np.log((ubar - vbar) ** 2 / 4)
    N = len(y)
    H = X.T @ X / N

    def w_of(G):
        return np.exp(np.minimum(la - 2 * G, 300.0)) - np.exp(np.minimum(lb + 2 * G, 300.0))  # trial steps stay finite

    def rhs(_tau, G):  # dG/dτ = ℓ g(w(G))
        return ell * (X.T @ (X @ w_of(G) - y)) / N

    def jac(_tau, G):
        return ell * H * (-2 * (np.exp(np.minimum(la - 2 * G, 300.0)) + np.exp(np.minimum(lb + 2 * G, 300.0))))[None, :]

    def event(level):
        def f(_tau, G):
            r = X @ w_of(G) - y
            return 0.5 * (r @ r) / N - level

        return f

    events = [event(level) for level in levels]
    sol = solve_ivp(rhs, (0.0, tau_end), np.zeros(X.shape[1]), method="Radau", jac=jac, rtol=rtol, atol=atol, events=events)
    assert sol.success, sol.message
    return np.array([t[0] if t.size else math.nan for t in sol.t_events])
