"""Chapter 8, *Why the updates are low rank* (label ``ch-low-rank-updates``).

Spectra of ΔW_Q, ΔW_K, ΔW_V, ΔW_O of the default runs (E2; claims C1, C1b), and the rank of the
update against the number of label-relevant patterns: C classes with one pattern each (C = 2…5,
C-output head) and the binary task with K = 2 patterns per class (E5). The sweep is kept in a
small committed file (``python -m lrt run p2-rank-sweep``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lrt import load_results, save_results
from lrt.experiments.ch07_p2_model import ALL_SEEDS, DATA, SEEDS, attention_table, concentrated, default_run
from lrt.book.figures import register_figure
from lrt.book.ledger import Measurement, claim
from lrt.p2 import (
    WEIGHTS,
    P2Config,
    off_span_fraction,
    pattern_projections,
    run_p2,
    run_summary,
    update_spectrum,
)
from lrt.book.tasks import register_run

CHAPTER = "ch-low-rank-updates"
CLASSES = (2, 3, 4, 5)
SWEEP_FILE = DATA / "p2_rank_sweep.pt"
RANK_CUT = 0.05  # numerical rank: σ_j > 5 % of σ_1


def class_config(C: int) -> P2Config:
    """C classes, one relevant pattern each, a C-output head (spec §8's clean rank experiment)."""
    return P2Config(n_classes=C, multi_output=True)


#: binary task with K = 2 relevant patterns per class (4 relevant patterns in all), α_* = 0.2 (spec E5)
K2_CONFIG = P2Config(patterns_per_class=2, alpha_relevant=0.2)


def sweep_cases() -> list[tuple[str, P2Config]]:
    return [(f"C{C}", class_config(C)) for C in CLASSES] + [("K2", K2_CONFIG)]


def sweep_record(steps: int | None = None, seeds=SEEDS, cases=None, progress: bool = False) -> dict[str, torch.Tensor]:
    """Train every case of :func:`sweep_cases` on ``seeds``; keys ``CASE/seedS/<run_summary key>``."""
    rec: dict[str, torch.Tensor] = {"seeds": torch.tensor(seeds)}
    jobs = [(name, cfg, s) for name, cfg in (cases or sweep_cases()) for s in seeds]
    for name, cfg, s in tqdm(jobs, disable=not progress, desc="p2-rank-sweep"):
        for key, value in run_summary(run_p2(cfg, s, steps=steps)).items():
            rec[f"{name}/seed{s}/{key}"] = value
    return rec


@register_run("p2-rank-sweep", chapter=CHAPTER, description="C = 2..5 classes and K = 2 patterns per class, seeds 0–2 -> lrt/data/p2_rank_sweep.pt")
def _run_sweep(steps: int | None = None, out: Path | None = None, progress: bool = True) -> Path:
    return save_results(sweep_record(steps, progress=progress), Path(out) if out is not None else SWEEP_FILE)


@lru_cache(maxsize=None)
def sweep() -> dict[str, torch.Tensor]:
    """The committed rank sweep (``CASE/seedS/KEY`` -> tensor).

    Defined in :ref:`ch-low-rank-updates`.
    """
    return load_results(SWEEP_FILE, run="p2-rank-sweep")


def numerical_rank(sigma: torch.Tensor, cut: float = RANK_CUT) -> int:
    return int((sigma > cut * sigma[0]).sum().item())


def rank_table(cut: float = RANK_CUT) -> dict[str, list[list[int]]]:
    """Numerical rank at ``cut`` of each ΔW for each case: {case: [[rank per seed] per matrix]}.

    Defined in :ref:`ch-low-rank-updates`.
    """
    rec = sweep()
    return {
        name: [[numerical_rank(rec[f"{name}/seed{s}/sigma_{w}"], cut) for s in SEEDS] for w in WEIGHTS]
        for name, _ in sweep_cases()
    }


@lru_cache(maxsize=None)
def spectra() -> dict[str, list[dict]]:
    """:func:`lrt.p2.update_spectrum` of each ΔW of the default runs: {matrix: [per seed 0–9]}.

    Defined in :ref:`ch-low-rank-updates`.
    """
    return {w: [update_spectrum(default_run(s).delta(w)) for s in ALL_SEEDS] for w in WEIGHTS}


def direction_ratio(delta: torch.Tensor, patterns: torch.Tensor) -> float:
    """max_{j ≥ 3} ‖ΔW μ_j‖ / mean_{j ∈ {1, 2}} ‖ΔW μ_j‖ (claim C1b)."""
    proj = pattern_projections(delta, patterns)
    return (proj[2:].max() / proj[:2].mean()).item()


@lru_cache(maxsize=None)
def directions() -> dict[str, list[float]]:
    """C1b ratio for W_Q, W_K, W_V of each default run (seeds 0–9), and the off-span fraction of each.

    Defined in :ref:`ch-low-rank-updates`.
    """
    out = {}
    for w in ("W_Q", "W_K", "W_V"):
        runs = [default_run(s) for s in ALL_SEEDS]
        out[w] = [direction_ratio(r.delta(w), r.train_data.patterns) for r in runs]
        out["offspan_" + w] = [off_span_fraction(r.delta(w), r.train_data.patterns[:2]) for r in runs]
    return out


def query_update_table() -> dict[str, np.ndarray]:
    """Per seed 0–9: the final relevant attention mass, whether it reaches the spec's C5 level
    (``concentrated``), and for ΔW_Q the energy share ``e2``, ``tail`` σ3/σ1 and the C1b ``ratio``.

    Defined in :ref:`ch-low-rank-updates`.
    """
    att, sp, d = attention_table(), spectra()["W_Q"], directions()["W_Q"]
    return {
        "seed": att["seed"], "attention": att["final"], "concentrated": concentrated(att),
        "e2": np.array([x["energy"] for x in sp]), "tail": np.array([x["tail"] for x in sp]), "ratio": np.array(d),
    }


# --- claims -------------------------------------------------------------------------------------


@claim(
    "P2.low_rank",
    chapter=CHAPTER,
    statement=(
        "SGD's updates of W_V and W_O have rank 2 = the number of label-relevant patterns and ΔW_K is dominated by its top "
        "two singular values, on every seed; ΔW_Q is that concentrated only on the seeds where the attention concentrates (C1, as measured)."
    ),
    prediction=(
        "e2 = (σ1² + σ2²)/Σσ² and σ3/σ1 of ΔW_Q, ΔW_K, ΔW_V, ΔW_O on seeds 0–9; measured value: max σ3/σ1 of ΔW_V, ΔW_O"
    ),
    tolerance=(
        "the spec's C1 bounds: e2 ≥ 0.99 and σ3/σ1 ≤ 0.05 for V and O, e2 ≥ 0.9 for K, on every seed; e2 ≥ 0.9 for Q on every "
        "seed that reaches the spec's C5 attention level (P2.attention)"
    ),
)
def _low_rank() -> Measurement:
    sp, q = spectra(), query_update_table()
    e2_vo = min(s["energy"] for w in ("W_V", "W_O") for s in sp[w])
    tail_vo = max(s["tail"] for w in ("W_V", "W_O") for s in sp[w])
    e2_k = min(s["energy"] for s in sp["W_K"])
    e2_q = q["e2"][q["concentrated"]]
    detail = (
        f"min e2 over V, O: {e2_vo:.4f}; max σ3/σ1 over V, O: {tail_vo:.4f}; min e2(K) {e2_k:.3f}; "
        f"e2(Q) on the concentrated seeds {[int(s) for s in q['seed'][q['concentrated']]]}: {', '.join(f'{x:.3f}' for x in e2_q)}; "
        f"on the others: {', '.join(f'{x:.3f}' for x in q['e2'][~q['concentrated']])}"
    )
    passed = e2_vo >= 0.99 and tail_vo <= 0.05 and e2_k >= 0.9 and len(e2_q) > 0 and e2_q.min() >= 0.9
    return Measurement(tail_vo, bool(passed), detail)


@claim(
    "P2.directions",
    chapter=CHAPTER,
    statement=(
        "The updates of W_K and W_V act mostly on the label-relevant patterns μ1, μ2 on every seed, and so does the update "
        "of W_Q on the seeds where the attention concentrates (C1b)."
    ),
    prediction="ratio max_{j≥3} ‖ΔW μ_j‖ / mean_{j∈{1,2}} ‖ΔW μ_j‖ on seeds 0–9; measured value: the worst ratio that the tolerance covers",
    tolerance="the spec's C1b bound ≤ 0.5: for W_K and W_V on every seed, for W_Q on every seed at the spec's C5 attention level",
)
def _directions() -> Measurement:
    d, q = directions(), query_update_table()
    worst = max(max(d["W_K"]), max(d["W_V"]), float(q["ratio"][q["concentrated"]].max()))
    detail = "per seed " + "; ".join(f"{w[-1]}: {', '.join(f'{x:.2f}' for x in d[w])}" for w in ("W_Q", "W_K", "W_V"))
    detail += "; off-span fraction of ΔW_V " + ", ".join(f"{x:.2f}" for x in d["offspan_W_V"])
    return Measurement.at_most(float(worst), 0.5, detail)


@claim(
    "P2.rank_vs_patterns",
    chapter=CHAPTER,
    statement="The rank of ΔW_V equals the number C of label-relevant patterns when each of C classes has one (C = 2…5); with K = 2 patterns per class in the binary task it stays at most the number of relevant patterns (it is 2).",
    prediction="numerical rank (σ_j > 5 % σ_1) of ΔW_V for C = 2, 3, 4, 5 and for K = 2, seeds 0–2",
    tolerance="rank = C in all 12 (C, seed) cases; rank ≤ 4 for K = 2 on every seed",
)
def _rank_vs_patterns() -> Measurement:
    table = rank_table()
    v = WEIGHTS.index("W_V")
    hits = sum(r == C for C in CLASSES for r in table[f"C{C}"][v])
    k2 = table["K2"][v]
    detail = "; ".join(f"C = {C}: {table[f'C{C}'][v]}" for C in CLASSES) + f"; K = 2: {k2}"
    return Measurement(hits, bool(hits == len(CLASSES) * len(SEEDS) and max(k2) <= 4), detail)


# --- figures ------------------------------------------------------------------------------------


@register_figure("p2-update-spectra", chapter=CHAPTER, caption="Normalised singular values σ_j/σ_1 of the four updates ΔW, seeds 0–2.")
def _figure_spectra():
    import matplotlib.pyplot as plt

    sp = spectra()
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.3), sharey=True)
    for ax, w in zip(axes, WEIGHTS):
        for s, spec in zip(SEEDS, sp[w]):  # the first three of seeds 0–9
            sigma = spec["sigma"]
            ax.semilogy(np.arange(1, 21), (sigma[:20] / sigma[0]).numpy(), "o-", ms=3, color=f"C{s}", label=f"seed {s}")
        ax.axhline(RANK_CUT, color="k", ls=":", lw=1)
        ax.set(title=f"$\\Delta W_{w[-1]}$", xlabel="index j", xticks=[1, 5, 10, 15, 20])
    axes[0].set(ylabel=r"$\sigma_j / \sigma_1$", ylim=(1e-4, 1.5))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


@register_figure("p2-pattern-projections", chapter=CHAPTER, caption="‖ΔW μ_j‖ for the 20 patterns (μ1, μ2 label-relevant), seed 0.")
def _figure_projections():
    import matplotlib.pyplot as plt

    run = default_run(0)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, w in zip(axes, ("W_Q", "W_K", "W_V")):
        proj = pattern_projections(run.delta(w), run.train_data.patterns).numpy()
        colours = ["C3", "C0"] + ["C7"] * (len(proj) - 2)
        ax.bar(np.arange(1, len(proj) + 1), proj, color=colours)
        ax.set(title=f"$\\|\\Delta W_{w[-1]} \\mu_j\\|$", xlabel="pattern j", xticks=[1, 2, 5, 10, 15, 20])
    fig.tight_layout()
    return fig


@register_figure("p2-rank-vs-classes", chapter=CHAPTER, caption="Spectra of ΔW_V and ΔW_Q for C = 2…5 classes (one relevant pattern each) and for K = 2 patterns per class, seed 0.")
def _figure_rank_vs_classes():
    import matplotlib.pyplot as plt

    rec = sweep()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, w in zip(axes, ("W_V", "W_Q")):
        for i, (name, _) in enumerate(sweep_cases()):
            sigma = rec[f"{name}/seed0/sigma_{w}"]
            label = f"C = {name[1:]}" if name.startswith("C") else "K = 2 (binary, 4 relevant patterns)"
            ax.semilogy(np.arange(1, 11), (sigma[:10] / sigma[0]).numpy(), "o-" if name.startswith("C") else "s--", ms=4, color=f"C{i}", label=label)
        ax.axhline(RANK_CUT, color="k", ls=":", lw=1)
        ax.set(title=f"$\\Delta W_{w[-1]}$", xlabel="index j", xticks=range(1, 11))
    axes[0].set(ylabel=r"$\sigma_j / \sigma_1$", ylim=(1e-4, 1.5))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
