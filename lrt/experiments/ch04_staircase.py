"""Chapter 4, *Learning an attention head: the staircase* (label ``ch-staircase``), P1 Fig 1.

Loss and entries of diag(w_Q)diag(w_K), diag(w_V)diag(w_O) against rescaled time for several α,
with the Algorithm 1 staircase overlaid; the rank of ΔW_K W_Qᵀ and ΔW_V W_Oᵀ grows by at most one per stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from lrt import crossing_times, rescaled_time
from lrt.experiments.ch01_conservation import attention_toy, teacher_w
from lrt.experiments.ch02_small_init import attention_run
from lrt.experiments.ch03_algorithm1 import attention_staircase, midpoint_levels
from lrt.book.figures import register_figure
from lrt.book.ledger import Measurement, claim

CHAPTER = "ch-staircase"

#: α of the figure's loss curves, and the α at which ranks are measured.
CURVE_EXPONENTS = (4, 16, 64)
RANK_EXPONENT = 100
#: an entry of Δ(W_K W_Qᵀ) or Δ(W_V W_Oᵀ) counts towards the rank when it exceeds this (the teacher's
#: smallest non-zero entry is 0.25; inactive entries at α = 1e-100 are below 1e-20).
RANK_THRESHOLD = 1e-3


def perturbation_ranks(w: torch.Tensor, w0: torch.Tensor, threshold: float = RANK_THRESHOLD) -> torch.Tensor:
    """Ranks of Δ(W_K W_Qᵀ) = diag(qk − qk(0)) and Δ(W_V W_Oᵀ) = diag(vo − vo(0)) for each row of ``w``.

    Arguments:
        w: shape ``(T, 2d)``; w0: shape ``(2d,)`` (the initial product).

    Returns:
        shape ``(T, 2)``, int64: (rank QK, rank VO); the matrices are diagonal, so the rank is the
        number of entries above ``threshold``.

    >>> perturbation_ranks(torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.5, 0.0, 1.0, 2.0]]), torch.zeros(4))
    tensor([[1, 0],
            [1, 2]])

    Defined in :ref:`ch-staircase`.
    """
    d = w.shape[-1] // 2
    big = (w - w0).abs() > threshold
    return torch.stack([big[..., :d].sum(-1), big[..., d:].sum(-1)], dim=-1)


@dataclass(frozen=True)
class RankSteps:
    """Ranks on each plateau (measured at the middle of the plateau in τ) and the jumps between them."""

    plateau_tau: np.ndarray  # (K + 1,)
    ranks: np.ndarray  # (K + 1, 2) measured on the gradient flow
    limit_ranks: np.ndarray  # (K + 1, 2) Algorithm 1's plateau points
    jumps: np.ndarray  # (K, 2)


@lru_cache(maxsize=None)
def rank_steps(exponent: float = RANK_EXPONENT) -> RankSteps:
    """Rank of the learned perturbations on every plateau of the gradient flow from α = 10^-exponent.

    Defined in :ref:`ch-staircase`.
    """
    run, stairs = attention_run(exponent), attention_staircase()
    tau = rescaled_time(run.t, run.log_alpha)
    times = crossing_times(tau, run.loss, midpoint_levels(stairs)).numpy()
    edges = np.concatenate([[0.0], times, [tau[-1].item()]])
    middles = (edges[:-1] + edges[1:]) / 2
    idx = np.searchsorted(tau.numpy(), middles)
    ranks = perturbation_ranks(run.w[idx], run.w[0]).numpy()
    limit = perturbation_ranks(stairs.w, torch.zeros(stairs.w.shape[1])).numpy()
    return RankSteps(middles, ranks, limit, np.diff(ranks, axis=0))


# --- claims -------------------------------------------------------------------------------------


@claim(
    "P1.rank_increment",
    chapter=CHAPTER,
    statement="The rank of each learned perturbation ΔW_K W_Qᵀ, ΔW_V W_Oᵀ grows by at most one per stage (P1 Thm 4.1).",
    prediction="largest rank jump between consecutive plateaus of the gradient flow at α = 1e-100 (log engine, entries > 1e-3 counted)",
    tolerance="≤ 1, and the measured ranks equal Algorithm 1's on every plateau",
)
def _rank_increment() -> Measurement:
    steps = rank_steps()
    worst = int(steps.jumps.max())
    same = bool((steps.ranks == steps.limit_ranks).all())
    detail = "ranks (QK, VO) per plateau: " + ", ".join(f"({a}, {b})" for a, b in steps.ranks)
    return Measurement(float(worst), worst <= 1 and same, detail)


# --- figures ------------------------------------------------------------------------------------


@register_figure("staircase-loss", chapter=CHAPTER, caption="Training loss against rescaled time τ = t/log(1/α) for several α, and the Algorithm 1 staircase (black).")
def _figure_loss():
    import matplotlib.pyplot as plt

    stairs = attention_staircase()
    fig, ax = plt.subplots(figsize=(7, 4))
    for e in CURVE_EXPONENTS:
        run = attention_run(e)
        ax.plot(rescaled_time(run.t, run.log_alpha), run.loss, label=rf"gradient flow, $\alpha = 10^{{-{e}}}$")
    tau = torch.linspace(0, 3, 3001, dtype=torch.float64)
    ax.plot(tau, stairs.loss_at(tau), "k", lw=1.2, label=r"Algorithm 1 ($\alpha \to 0$)")
    ax.set(xlabel=r"rescaled time $\tau = t/\log(1/\alpha)$", ylabel="training loss")
    ax.legend()
    fig.tight_layout()
    return fig


@register_figure("staircase-entries", chapter=CHAPTER, caption="Entries of diag(w_Q)diag(w_K) (left) and diag(w_V)diag(w_O) (right) against τ at α = 1e-16 (solid) with Algorithm 1's plateau values (dashed) and the teacher (dotted).")
def _figure_entries():
    import matplotlib.pyplot as plt

    stairs, run = attention_staircase(), attention_run(16)
    d = attention_toy().d
    tau = rescaled_time(run.t, run.log_alpha)
    grid = torch.linspace(0, 3, 3001, dtype=torch.float64)
    limit = stairs.w_at(grid)
    teacher = teacher_w()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for half, ax, name in [(0, axes[0], r"$(w_Q w_K)_i$"), (1, axes[1], r"$(w_V w_O)_i$")]:
        for i in range(d):
            j = half * d + i
            line = ax.plot(tau, run.w[:, j], label=f"i = {i + 1}")[0]
            ax.plot(grid, limit[:, j], "--", color=line.get_color(), lw=1)
            ax.axhline(teacher[j].item(), color=line.get_color(), ls=":", lw=0.8)
        ax.set(xlabel=r"rescaled time $\tau$", title=name)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


@register_figure("staircase-rank", chapter=CHAPTER, caption="Rank of ΔW_K W_Qᵀ and ΔW_V W_Oᵀ against τ at α = 1e-100 (entries above 1e-3), and Algorithm 1's ranks (dashed).")
def _figure_rank():
    import matplotlib.pyplot as plt

    run, stairs = attention_run(RANK_EXPONENT), attention_staircase()
    tau = rescaled_time(run.t, run.log_alpha)
    ranks = perturbation_ranks(run.w, run.w[0])
    grid = torch.linspace(0, 3, 3001, dtype=torch.float64)
    limit = perturbation_ranks(stairs.w_at(grid), torch.zeros(stairs.w.shape[1]))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k, name in enumerate([r"rank $\Delta W_K W_Q^\top$", r"rank $\Delta W_V W_O^\top$"]):
        line = ax.step(tau, ranks[:, k], where="post", label=name)[0]
        ax.step(grid, limit[:, k], "--", where="post", color=line.get_color(), lw=1)
    for t in stairs.tau:
        ax.axvline(t.item(), color="0.8", lw=0.8, zorder=0)
    ax.set(xlabel=r"rescaled time $\tau$", ylabel="rank", yticks=range(0, 4))
    ax.legend()
    fig.tight_layout()
    return fig
