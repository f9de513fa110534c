"""Chapter 1, *Diagonal networks and the conservation law* (label ``ch-conservation``).

One diagonal attention head learns a teacher head from α = 0.01; gradient flow conserves
u_i² − v_i² to solver accuracy, gradient descent multiplies it by (1 − η² g_i²) at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from lrt import (
    DiagonalAttentionHead,
    Trajectory,
    attention_teacher_data,
    below,
    gradient_descent,
    gradient_flow,
    invariant_drift,
    small_init,
)
from lrt.book.figures import register_figure
from lrt.book.ledger import Measurement, claim

CHAPTER = "ch-conservation"

#: The toy of the book: N samples of n tokens in d dimensions and a teacher head with
#: distinct non-zero diagonal entries.
TOY = dict(n_samples=64, n_tokens=8, qk=[2.0, 1.0, 0.0, 0.0], vo=[1.0, 0.5, 0.25, 0.0], temperature=2.0)
DATA_SEED, INIT_SEED = 0, 1
ALPHA = 1e-2
T_END = 30.0
DRIFT_TOLERANCE = 1e-10
STEP_FACTOR_TOLERANCE = 1e-9
# Bounds printed in place of the round-off-level values (lrt.core.formatting.below). Chosen after the
# measurements (drift 6.4e-12; step-factor error at most 6.1e-11, over the native and the portable
# kernels), with a factor of 3 of room for other machines; the verdicts use the tolerances above,
# which were fixed before.
DRIFT_SHOWN_BOUND = 2e-11
STEP_FACTOR_SHOWN_BOUND = 2e-10
GD_HORIZON = 10.0
GD_RATES = (0.04, 0.02, 0.01, 0.005)


@lru_cache(maxsize=None)
def attention_toy() -> DiagonalAttentionHead:
    """The book's diagonal-attention toy problem (data seed 0).

    Defined in :ref:`ch-conservation`.
    """
    data = attention_teacher_data(**TOY, generator=DATA_SEED)
    return DiagonalAttentionHead(data.X, data.Y, temperature=data.temperature)


def teacher_w() -> torch.Tensor:
    """The teacher's (w_Q ⊙ w_K, w_V ⊙ w_O), shape ``(2d,)``."""
    return torch.tensor(TOY["qk"] + TOY["vo"], dtype=torch.float64)


@lru_cache(maxsize=None)
def conservation_run() -> Trajectory:
    """Gradient flow (DOP853, rtol 1e-10) on the toy from u(0) = α ū, v(0) = α v̄, α = 0.01.

    Defined in :ref:`ch-conservation`.
    """
    u0, v0 = small_init(attention_toy().dim, ALPHA, generator=INIT_SEED)
    return gradient_flow(attention_toy(), u0, v0, t_end=T_END, n_eval=601, method="DOP853", rtol=1e-10)


def drift_series(path: Trajectory) -> torch.Tensor:
    """max_i |c_i(t) − c_i(0)| / max_t (u_i² + v_i²) at each sample time of ``path``, shape ``(T,)``
    (what the figure ``conservation-drift`` plots)."""
    c = path.invariant
    return ((c - c[0]).abs() / (path.u**2 + path.v**2).amax(dim=0)).amax(dim=1)


@dataclass(frozen=True)
class DescentDrift:
    """Gradient descent at step η against the flow, over the horizon ``GD_HORIZON``.

    ``step_factor_error``: max over steps and coordinates of |c_{k+1}/c_k − (1 − η² g_k²)|.
    ``log_drift``: max_i of −log(c_i(T)/c_i(0)); ``first_order``: η ∫_0^T g_i(w(t))² dt along the
    flow for the same i (the prediction for small η).
    """

    lr: float
    steps: int
    step_factor_error: float
    log_drift: float
    first_order: float
    path: Trajectory


@lru_cache(maxsize=None)
def _flow_integral_of_g_squared() -> np.ndarray:
    """∫_0^T g_i(w(t))² dt along the gradient flow over ``GD_HORIZON`` (trapezoid rule on 2001
    samples), shape ``(p,)``."""
    problem = attention_toy()
    u0, v0 = small_init(problem.dim, ALPHA, generator=INIT_SEED)
    flow = gradient_flow(problem, u0, v0, t_end=GD_HORIZON, n_eval=2001, rtol=1e-10)
    g = np.stack([problem.loss_and_grad_numpy(w)[1] for w in flow.w.numpy()])
    return np.trapezoid(g**2, flow.t.numpy(), axis=0)


@lru_cache(maxsize=None)
def descent_drift(lr: float) -> DescentDrift:
    """Run gradient descent at step ``lr`` over ``GD_HORIZON`` and measure the conservation law.

    Defined in :ref:`ch-conservation`.
    """
    problem = attention_toy()
    u0, v0 = small_init(problem.dim, ALPHA, generator=INIT_SEED)
    steps = int(round(GD_HORIZON / lr))
    path = gradient_descent(problem, u0, v0, lr=lr, steps=steps)
    c = path.invariant.numpy()
    g = np.stack([problem.loss_and_grad_numpy(w)[1] for w in path.w.numpy()[:-1]])
    factor_error = np.abs(c[1:] / c[:-1] - (1.0 - lr**2 * g**2)).max()
    log_drift = -np.log(c[-1] / c[0])
    i = int(np.argmax(np.abs(log_drift)))
    first_order = lr * _flow_integral_of_g_squared()[i]
    return DescentDrift(lr, steps, float(factor_error), float(log_drift[i]), float(first_order), path)


# --- claims -------------------------------------------------------------------------------------


@claim(
    "P1.conservation",
    chapter=CHAPTER,
    statement="Under gradient flow, u_i² − v_i² is conserved for every coordinate (P1 Lemma 4.2).",
    prediction="max over i and t of |c_i(t) − c_i(0)| / max_t (u_i² + v_i²) on the attention toy, α = 0.01, float64 DOP853 at rtol 1e-10",
    tolerance="≤ 1e-10",
)
def _conservation() -> Measurement:
    drift = invariant_drift(conservation_run()).max().item()
    return Measurement.at_most(drift, DRIFT_TOLERANCE, f"final loss {conservation_run().loss[-1].item():.1e}",
                               shown=_bound(drift, DRIFT_SHOWN_BOUND))


@claim(
    "P1.gd_step_factor",
    chapter=CHAPTER,
    statement="One gradient-descent step multiplies u_i² − v_i² by exactly (1 − η² g_i²).",
    prediction="max over steps, coordinates and η ∈ {0.04, 0.02, 0.01, 0.005} of |c_{k+1}/c_k − (1 − η² g_k²)|",
    tolerance="≤ 1e-9 (round-off of a ratio of O(α²) numbers)",
)
def _gd_step_factor() -> Measurement:
    worst = max(descent_drift(lr).step_factor_error for lr in GD_RATES)
    return Measurement.at_most(worst, STEP_FACTOR_TOLERANCE, shown=_bound(worst, STEP_FACTOR_SHOWN_BOUND))


def _bound(value: float, bound: float) -> str:
    """The round-off-level ``value`` as ``< bound``; when it is not below the bound, no text (the
    ledger then prints the value itself, and the chapter's check fails visibly)."""
    return below(value, bound) if abs(value) < bound else ""


@claim(
    "P1.gd_drift_first_order",
    chapter=CHAPTER,
    statement="Over a fixed horizon T, descent's drift −log(c_i(T)/c_i(0)) is η ∫ g_i² dt + O(η²).",
    prediction="relative gap between the measured drift and η ∫_0^T g_i² dt at the smallest η (0.005), and it halves as η halves",
    tolerance="gap ≤ 5 % at η = 0.005 and decreasing in η",
)
def _gd_first_order() -> Measurement:
    gaps = [abs(d.log_drift / d.first_order - 1.0) for d in map(descent_drift, GD_RATES)]
    monotone = all(a > b for a, b in zip(gaps, gaps[1:]))
    detail = "gaps " + ", ".join(f"{g:.3f}" for g in gaps) + f" for η = {', '.join(map(str, GD_RATES))}"
    return Measurement(gaps[-1], bool(gaps[-1] <= 0.05 and monotone), detail)


# --- figures ------------------------------------------------------------------------------------


def _labels(d: int) -> list[str]:
    return [f"$(w_Q w_K)_{i + 1}$" for i in range(d)] + [f"$(w_V w_O)_{i + 1}$" for i in range(d)]


@register_figure("attention-toy-training", chapter=CHAPTER, caption="Loss and the entries of w = u ⊙ v under gradient flow, α = 0.01.")
def _figure_training():
    import matplotlib.pyplot as plt

    path = conservation_run()
    d = attention_toy().d
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax0.semilogy(path.t, path.loss)
    ax0.set(xlabel="time t", ylabel="training loss F(w(t))", title="loss")
    for i, (series, label) in enumerate(zip(path.w.T, _labels(d))):
        ax1.plot(path.t, series, label=label, ls="-" if i < d else "--")
    ax1.set(xlabel="time t", ylabel="entry of w", title="entries of w (solid: QK, dashed: VO)")
    ax1.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    return fig


@register_figure("conservation-drift", chapter=CHAPTER, caption="Drift of u_i² − v_i² under gradient flow (float64) and gradient descent (η = 0.01).")
def _figure_drift():
    import matplotlib.pyplot as plt

    flow, gd = conservation_run(), descent_drift(0.01).path
    fig, ax = plt.subplots(figsize=(7, 4))
    for path, name, style in [(flow, "gradient flow (DOP853)", "-"), (gd, "gradient descent, η = 0.01", ":")]:
        ax.semilogy(path.t[1:], drift_series(path)[1:].clamp_min(1e-18), style, label=name)
    ax.axhline(DRIFT_TOLERANCE, color="k", lw=0.8, ls="--", label="ledger tolerance 1e-10")
    ax.set(xlabel="time t", ylabel=r"$\max_i |c_i(t)-c_i(0)| / \max_t(u_i^2+v_i^2)$", ylim=(1e-18, 10))
    ax.legend()
    fig.tight_layout()
    return fig


@register_figure("gd-drift-vs-lr", chapter=CHAPTER, caption="Drift of the invariant after gradient descent over t ∈ [0, 10], against the first-order prediction η ∫ g² dt.")
def _figure_gd_drift():
    import matplotlib.pyplot as plt

    runs = [descent_drift(lr) for lr in GD_RATES]
    lrs = np.array(GD_RATES)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(lrs, [r.log_drift for r in runs], "o", label=r"measured $-\log(c_i(T)/c_i(0))$")
    ax.loglog(lrs, [r.first_order for r in runs], "-", label=r"first order $\eta\int_0^T g_i^2\,dt$")
    ax.set(xlabel="step size η", ylabel="drift of the invariant over [0, 10]")
    ax.legend()
    fig.tight_layout()
    return fig
