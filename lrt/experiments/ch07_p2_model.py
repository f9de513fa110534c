"""Chapter 7, *Data model and a one-layer transformer* (label ``ch-p2-model``).

The default run of spec §1–3 (d = M = L = 20, m = 200, B = 64, η = 1, T = 500) on seeds 0–9:
training curves, attention on the label-relevant tokens (C5) and generalisation (C6). The ten
trained networks are kept in a small committed file (``python -m lrt run p2-seeds``) that chapters
8–10 and the ledger load; this chapter also retrains seed 0 and checks it against the file.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lrt import LrtError, load_results, save_results
from lrt.book.figures import register_figure
from lrt.book.ledger import Measurement, claim
from lrt.p2 import WEIGHTS, P2Config, P2Run, TrainLog, attention_by_kind, run_p2, setup_p2
from lrt.book.tasks import register_run

CHAPTER = "ch-p2-model"
CONFIG = P2Config()
#: the seeds whose trained networks chapters 8–10 dissect
SEEDS = (0, 1, 2)
#: every seed of the committed file: the attention (C5) and generalisation (C6) claims use all ten,
#: because the final attention mass varies a lot from seed to seed
ALL_SEEDS = tuple(range(10))
DATA = Path(__file__).resolve().parents[1] / "data"
SEEDS_FILE = DATA / "p2_seeds.pt"
#: attention mass on the 3 relevant keys among 20 at W_Q = W_K = I without noise: 3e / (3e + 17)
ATTENTION_AT_INIT = 3 * math.e / (3 * math.e + 17)


def seeds_record(steps: int | None = None, seeds=ALL_SEEDS, progress: bool = False) -> dict[str, torch.Tensor]:
    """Train the default configuration on ``seeds`` and stack what the book keeps: the four trained
    matrices ``W_*`` ``(len(seeds), …)`` and the log series ``(len(seeds), k)``."""
    runs = [run_p2(CONFIG, s, steps=steps) for s in tqdm(seeds, disable=not progress, desc="p2-seeds")]
    rec = {name: torch.stack([getattr(r.model, name).detach() for r in runs]) for name in WEIGHTS}
    for key in TrainLog.__dataclass_fields__:
        rec["log_" + key] = torch.stack([getattr(r.log, key) for r in runs])
    rec["seeds"] = torch.tensor(seeds)
    return rec


@register_run("p2-seeds", chapter=CHAPTER, description="default P2 run (spec §1–3) on seeds 0–9 -> lrt/data/p2_seeds.pt")
def _run_seeds(steps: int | None = None, out: Path | None = None, progress: bool = True) -> Path:
    return save_results(seeds_record(steps, progress=progress), Path(out) if out is not None else SEEDS_FILE)


@lru_cache(maxsize=None)
def _seeds_file() -> dict[str, torch.Tensor]:
    return load_results(SEEDS_FILE, run="p2-seeds")


@lru_cache(maxsize=None)
def default_run(seed: int) -> P2Run:
    """The trained default network of ``seed`` ∈ {0, 1, 2}, rebuilt from its seed (data,
    initialisation) and the committed trained weights.

    Defined in :ref:`ch-p2-model`.
    """
    rec = _seeds_file()
    if seed not in rec["seeds"].tolist():
        raise LrtError(f"seed: expected one of {rec['seeds'].tolist()}, got {seed!r}")
    i = rec["seeds"].tolist().index(seed)
    model, train_data, test_data, _ = setup_p2(CONFIG, seed)
    init = {k: v.detach().clone() for k, v in model.weights().items()}
    with torch.no_grad():
        for name in WEIGHTS:
            getattr(model, name).copy_(rec[name][i])
    log = TrainLog(**{k: rec["log_" + k][i] for k in TrainLog.__dataclass_fields__})
    return P2Run(CONFIG, seed, model, init, train_data, test_data, log)


@lru_cache(maxsize=None)
def live_run(seed: int = 0) -> P2Run:
    """Seed ``seed`` trained now, in this process (about 5–10 s)."""
    return run_p2(CONFIG, seed)


def max_weight_gap(a: P2Run, b: P2Run) -> float:
    """max over the four matrices of max |W_a − W_b|."""
    return max((getattr(a.model, n) - getattr(b.model, n)).abs().max().item() for n in WEIGHTS)


# --- claims -------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def attention_table() -> dict[str, np.ndarray]:
    """Relevant attention mass on seeds 0–9 (:data:`ALL_SEEDS`): ``initial``, ``peak`` and ``final``
    (test set, from the committed logs), and where the label-relevant queries look at T
    (:func:`lrt.p2.attention_by_kind`): ``relevant``, ``confusion``, ``irrelevant``; each ``(10,)``.

    Defined in :ref:`ch-p2-model`.
    """
    runs = [default_run(s) for s in ALL_SEEDS]
    kinds = [attention_by_kind(r.model, r.test_data) for r in runs]
    out = {
        "seed": np.array(ALL_SEEDS),
        "initial": np.array([r.log.attention[0].item() for r in runs]),
        "peak": np.array([r.log.attention.max().item() for r in runs]),
        "final": np.array([r.log.attention[-1].item() for r in runs]),
    }
    out.update({k: np.array([kd[k] for kd in kinds]) for k in ("relevant", "confusion", "irrelevant")})
    return out


#: the spec's per-seed level for C5: final mass ≥ 0.75 and ≥ 2× the initial mass
SPEC_FINAL, SPEC_RATIO = 0.75, 2.0


def concentrated(table: dict[str, np.ndarray]) -> np.ndarray:
    """Which seeds reach the spec's C5 level (final ≥ 0.75 and ≥ 2× initial), ``(10,)`` bool."""
    return (table["final"] >= SPEC_FINAL) & (table["final"] >= SPEC_RATIO * table["initial"])


@claim(
    "P2.attention",
    chapter=CHAPTER,
    statement=(
        "SGD concentrates the attention of label-relevant queries on the label-relevant keys (C5, ICLR23 Prop. 2) on most "
        "seeds, but not on all: from the identity initialisation the final level varies strongly with the seed."
    ),
    prediction=(
        "relevant attention mass on the test set after T = 500 steps on seeds 0–9, against its value at initialisation "
        "(≈ 3e/(3e+17) = 0.324). Measured value: the number of seeds reaching the spec's C5 level (final ≥ 0.75 and ≥ 2× initial)"
    ),
    tolerance=(
        "the spec's C5 level on at least 3 of the 10 seeds (pooled rate of two implementations ≈ 0.6; fewer than 3 of 10 "
        "would have probability ≈ 1 % at that rate)"
    ),
)
def _attention() -> Measurement:
    t = attention_table()
    ok = concentrated(t)
    fmt = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    detail = (
        f"final {fmt(t['final'])} (mean {t['final'].mean():.3f}, median {np.median(t['final']):.3f}); "
        f"peak {fmt(t['peak'])}; seeds at the spec's level: {[int(s) for s in t['seed'][ok]]}"
    )
    return Measurement(float(ok.sum()), bool(ok.sum() >= 3), detail)


@claim(
    "P2.generalization",
    chapter=CHAPTER,
    statement="The trained one-layer transformer generalises: small test hinge loss and 0-1 error at T (C6).",
    prediction="max over seeds 0–9 of the test hinge loss at T = 500 (1000 fresh samples); also the test 0-1 error",
    tolerance="test hinge ≤ 0.02 and test 0-1 error ≤ 0.01 on every seed",
)
def _generalization() -> Measurement:
    runs = [default_run(s) for s in ALL_SEEDS]
    hinge = max(r.log.test_hinge[-1].item() for r in runs)
    error = max(r.log.test_error[-1].item() for r in runs)
    return Measurement(hinge, bool(hinge <= 0.02 and error <= 0.01), f"max test 0-1 error {error:.3f}")


# --- figures ------------------------------------------------------------------------------------


@register_figure("p2-training", chapter=CHAPTER, caption="Train/test hinge loss and test 0-1 error of the default run, seeds 0–2.")
def _figure_training():
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
    for s in SEEDS:
        log = default_run(s).log
        t = log.steps.numpy()
        ax0.semilogy(t, log.train_hinge.clamp_min(1e-5), "-", color=f"C{s}", label=f"seed {s}: train (500 samples)")
        ax0.semilogy(t, log.test_hinge.clamp_min(1e-5), "--", color=f"C{s}", label=f"seed {s}: test")
        ax1.plot(t, log.test_error, "o-", color=f"C{s}", ms=3, label=f"seed {s}")
    ax0.set(xlabel="SGD step t", ylabel="hinge loss", title="hinge loss")
    ax1.set(xlabel="SGD step t", ylabel="test 0-1 error", title="test 0-1 error")
    ax0.legend(fontsize=7, ncol=2)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register_figure(
    "p2-attention", chapter=CHAPTER,
    caption="Left: attention mass of label-relevant queries on label-relevant keys during training, seeds 0–9. Right: where those queries look at T, per seed.",
)
def _figure_attention():
    import matplotlib.pyplot as plt

    table = attention_table()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    for s in ALL_SEEDS:
        log = default_run(s).log
        ax0.plot(log.steps.numpy(), log.attention.numpy(), "o-", ms=2.5, lw=1.2, color=f"C{s}", label=f"seed {s}")
    ax0.axhline(ATTENTION_AT_INIT, color="k", ls=":", lw=1)
    ax0.axhline(3 / 20, color="grey", ls="--", lw=1)
    ax0.text(500, ATTENTION_AT_INIT - 0.015, "3e/(3e+17): identity init", ha="right", va="top", fontsize=7)
    ax0.text(500, 3 / 20 - 0.015, "uniform 3/20", ha="right", va="top", fontsize=7)
    ax0.set(xlabel="SGD step t", ylabel="relevant attention mass", ylim=(0, 1))
    ax0.legend(fontsize=7, ncol=2)
    x = np.arange(len(ALL_SEEDS))
    bottom = np.zeros(len(x))
    for kind, color in (("relevant", "C2"), ("confusion", "C3"), ("irrelevant", "0.7")):
        ax1.bar(x, table[kind], bottom=bottom, color=color, label=f"{kind} keys")
        bottom += table[kind]
    ax1.axhline(SPEC_FINAL, color="k", ls=":", lw=1)
    ax1.set(xlabel="seed", ylabel="attention of relevant queries at T", xticks=x, ylim=(0, 1))
    ax1.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    return fig
