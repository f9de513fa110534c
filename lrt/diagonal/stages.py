"""Measuring a finite-α run against the α → 0 staircase, in rescaled time τ = t / log(1/α)."""

from __future__ import annotations

import math

import numpy as np
import torch

from lrt.core.errors import LrtError, LrtTypeError
from lrt.core import checks as _checks
from lrt.diagonal.algorithm1 import Staircase

__all__ = ["rescaled_time", "crossing_times", "staircase_distance", "first_stage_time"]


def rescaled_time(t, log_alpha: float) -> torch.Tensor:
    """τ = t / log(1/α) for times ``t`` (any shape) and ``log_alpha`` = log α < 0.

    >>> rescaled_time(torch.tensor([0.0, 46.0517]), log_alpha=-20 * math.log(10)).round(decimals=4)
    tensor([0., 1.])

    Defined in :ref:`ch-small-init`.
    """
    log_alpha = _checks.log_alpha("log_alpha", log_alpha, negative=True)
    return torch.as_tensor(t, dtype=torch.float64) / -log_alpha


def crossing_times(tau, loss, levels) -> torch.Tensor:
    """First time the decreasing curve ``loss(tau)`` falls to each level (linear interpolation).

    A finite-α run's stage times: with ``levels`` the midpoints between consecutive plateau losses
    of a :class:`~lrt.algorithm1.Staircase`, the k-th crossing is the run's k-th jump.

    Arguments:
        tau, loss: shape ``(T,)``, the sampled curve.
        levels: shape ``(K,)``.

    Returns:
        shape ``(K,)``; ``nan`` where the curve never reaches the level.

    >>> crossing_times(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 1.0, 0.0]), torch.tensor([2.0, 0.5]))
    tensor([0.5000, 1.5000])

    Defined in :ref:`ch-algorithm1`.
    """
    tau = _checks.tensor("tau", tau, shape=(None,)).numpy()
    loss = _checks.tensor("loss", loss, shape=(tau.size,)).numpy()
    levels = _checks.tensor("levels", levels, shape=(None,)).numpy()
    out = np.full(levels.size, np.nan)
    for k, level in enumerate(levels):
        below = np.flatnonzero(loss <= level)
        if below.size == 0:
            continue
        j = below[0]
        if j == 0:
            out[k] = tau[0]
            continue
        frac = (loss[j - 1] - level) / (loss[j - 1] - loss[j])
        out[k] = tau[j - 1] + frac * (tau[j] - tau[j - 1])
    return torch.from_numpy(out)


def staircase_distance(tau, loss, stairs: Staircase) -> float:
    """L1 distance in rescaled time, ∫ |F(w(τ)) − F_∞(τ)| dτ, between a run and the staircase.

    Arguments:
        tau, loss: shape ``(T,)``, the run's loss against rescaled time (a fine, uniform grid: the
            integral is the trapezoid rule, and the staircase's jumps cost O(grid step) each).
        stairs: the α → 0 limit from :func:`~lrt.algorithm1.algorithm1`.

    Defined in :ref:`ch-algorithm1`.
    """
    if not isinstance(stairs, Staircase):
        raise LrtTypeError(f"stairs: expected a Staircase, got {type(stairs).__name__}")
    tau = _checks.tensor("tau", tau, shape=(None,))
    loss = _checks.tensor("loss", loss, shape=(tau.numel(),))
    return float(torch.trapezoid((loss - stairs.loss_at(tau)).abs(), tau))


def first_stage_time(t, w, level: float) -> float:
    """The first time any |w_i| reaches ``level``: the measured end of the first plateau.

    Arguments:
        t: shape ``(T,)``; w: shape ``(T, p)``; level: > 0.

    >>> first_stage_time(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([[0.0, 0.0], [0.0, -0.2], [0.1, -0.6]]), 0.4)
    1.5

    Defined in :ref:`ch-small-init`.
    """
    t = _checks.tensor("t", t, shape=(None,))
    w = _checks.tensor("w", w, shape=(t.numel(), None))
    level = _checks.positive_float("level", level)
    reached = crossing_times(t, -w.abs().amax(dim=1), torch.tensor([-level]))[0].item()
    if math.isnan(reached):
        raise LrtError(f"first_stage_time: no |w_i| reaches level {level!r} by t = {t[-1].item()!r}")
    return reached
