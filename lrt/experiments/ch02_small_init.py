"""Chapter 2, *Small initialisation: plateaus of length Θ(log 1/α)* (label ``ch-small-init``).

The log-variable engine on the attention toy of chapter 1: the first plateau ends at
t_1(α) = [log(1/α) + ½ log(4c) − log|ū_i ± v̄_i|] / |g_i(0)|, so t_1 against log(1/α) has slope 1/‖g(0)‖_∞.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from lrt import LogTrajectory, first_stage_time, log_variable_flow, rescaled_time, small_init
from lrt.experiments.ch01_conservation import INIT_SEED, attention_toy
from lrt.book.figures import register_figure
from lrt.book.ledger import Measurement, claim

CHAPTER = "ch-small-init"

#: α = 10^-e for these e: the first-stage sweep (α = 1e-2 … 1e-32).
EXPONENTS = (2, 3, 4, 6, 8, 12, 16, 24, 32)
#: |w_i| = LEVEL marks the end of the first plateau (small: the linearisation holds up to it).
LEVEL = 1e-2
SLOPE_TOLERANCE = 0.02
#: α values of the loss-curve figure.
CURVE_EXPONENTS = (2, 4, 8, 16)
TAU_END = 3.0


def log_alpha(exponent: float) -> float:
    """log α for α = 10^-exponent."""
    return -exponent * math.log(10.0)


def init_directions() -> tuple[torch.Tensor, torch.Tensor]:
    """(ū, v̄): the initialisation directions of the book's runs (seed ``INIT_SEED``), each ``(2d,)``."""
    return small_init(attention_toy().dim, 1.0, generator=INIT_SEED)


def predicted_first_stage(exponent: float, level: float = LEVEL) -> tuple[float, int]:
    """Closed-form t_1(α) (minimum over coordinates) and the coordinate that attains it."""
    ubar, vbar = (x.numpy() for x in init_directions())
    g0 = attention_toy().loss_and_grad_numpy(np.zeros(attention_toy().dim))[1]
    # g_i < 0: a = u + v grows and w_i > 0; g_i > 0: b = u − v grows and w_i < 0
    seed = np.where(g0 < 0, np.abs(ubar + vbar), np.abs(ubar - vbar))
    with np.errstate(divide="ignore"):
        t1 = (-log_alpha(exponent) + 0.5 * math.log(4 * level) - np.log(seed)) / np.abs(g0)
    i = int(np.argmin(t1))
    return float(t1[i]), i


@lru_cache(maxsize=None)
def first_stage_run(exponent: float) -> LogTrajectory:
    """The log-variable engine from α = 10^-exponent up to 1.5× the predicted first-stage time."""
    ubar, vbar = init_directions()
    t_end = 1.5 * predicted_first_stage(exponent)[0]
    return log_variable_flow(attention_toy(), ubar, vbar, log_alpha=log_alpha(exponent), t_end=t_end, n_eval=1201)


@dataclass(frozen=True)
class FirstStageSweep:
    """Measured and predicted first-stage times over ``EXPONENTS``, with the fitted slope."""

    log_inv_alpha: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    slope: float
    predicted_slope: float

    @property
    def slope_error(self) -> float:
        return abs(self.slope / self.predicted_slope - 1.0)


@lru_cache(maxsize=None)
def first_stage_sweep() -> FirstStageSweep:
    """t_1(α) measured on the log engine for every α in ``EXPONENTS``; least-squares slope in log(1/α).

    Defined in :ref:`ch-small-init`.
    """
    x = np.array([-log_alpha(e) for e in EXPONENTS])
    measured = np.array([first_stage_time(first_stage_run(e).t, first_stage_run(e).w, LEVEL) for e in EXPONENTS])
    predicted = np.array([predicted_first_stage(e)[0] for e in EXPONENTS])
    slope = float(np.polyfit(x, measured, 1)[0])
    g0 = attention_toy().loss_and_grad_numpy(np.zeros(attention_toy().dim))[1]
    return FirstStageSweep(x, measured, predicted, slope, float(1.0 / np.abs(g0).max()))


@lru_cache(maxsize=None)
def attention_run(exponent: float) -> LogTrajectory:
    """The log engine on the attention toy from α = 10^-exponent over rescaled time τ ∈ [0, 3] (4001 samples:
    chapter 3 integrates |F − F_∞| over τ on this grid, and at α = 1e-100 the jumps are ≈ 0.004 wide)."""
    ubar, vbar = init_directions()
    t_end = TAU_END * -log_alpha(exponent)
    return log_variable_flow(attention_toy(), ubar, vbar, log_alpha=log_alpha(exponent), t_end=t_end, n_eval=4001)


# --- claims -------------------------------------------------------------------------------------


@claim(
    "P1.stage_time_slope",
    chapter=CHAPTER,
    statement="The first plateau lasts Θ(log 1/α): t_1(α) ≈ log(1/α) / ‖g(0)‖_∞ + O(1).",
    prediction="relative error between the least-squares slope of measured t_1 against log(1/α) (α = 1e-2 … 1e-32, log engine, end of plateau at max|w_i| = 0.01) and 1/‖g(0)‖_∞",
    tolerance="≤ 2 %",
)
def _stage_time_slope() -> Measurement:
    sweep = first_stage_sweep()
    gap = np.abs(sweep.measured - sweep.predicted).max()
    detail = f"slope {sweep.slope:.5f} vs 1/‖g(0)‖∞ = {sweep.predicted_slope:.5f}; max |t_1 − closed form| = {gap:.1e}"
    return Measurement.at_most(sweep.slope_error, SLOPE_TOLERANCE, detail)


# --- figures ------------------------------------------------------------------------------------


@register_figure("first-stage-time", chapter=CHAPTER, caption="First-stage time t_1 against log(1/α): measured (log engine) and the closed form.")
def _figure_first_stage():
    import matplotlib.pyplot as plt

    sweep = first_stage_sweep()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sweep.log_inv_alpha, sweep.measured, "o", label="measured (log-variable engine)")
    ax.plot(sweep.log_inv_alpha, sweep.predicted, "-", label=r"closed form $t_1(\alpha)$")
    ax.set(xlabel=r"$\log(1/\alpha)$", ylabel=r"end of the first plateau $t_1$")
    ax.set_title(f"slope {sweep.slope:.4f}, predicted 1/‖g(0)‖∞ = {sweep.predicted_slope:.4f}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig


@register_figure("plateaus-real-and-rescaled-time", chapter=CHAPTER, caption="Training loss from several α against real time t (left) and rescaled time τ = t / log(1/α) (right).")
def _figure_curves():
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for e in CURVE_EXPONENTS:
        path = attention_run(e)
        ax0.plot(path.t, path.loss, label=rf"$\alpha = 10^{{-{e}}}$")
        ax1.plot(rescaled_time(path.t, path.log_alpha), path.loss)
    ax0.set(xlabel="time t", ylabel="training loss")
    ax1.set(xlabel=r"rescaled time $\tau = t/\log(1/\alpha)$")
    ax0.legend()
    fig.tight_layout()
    return fig
