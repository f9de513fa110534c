"""Chapter 6, *Beyond diagonal weights* (label ``ch-beyond-diagonal``).

A small ViT on scikit-learn's 8×8 digits and a tiny character GPT on ``pydoc_data.topics``, trained
with Adam from the ordinary initialisation: the perturbations Δ(W_K W_Qᵀ) and Δ(W_V W_Oᵀ) of every
head are tracked through training (P1 Figs 3–5). The runs take minutes, so the chapter loads their
committed results files (``lrt/data/ch06_*.pt``), written by ``python -m lrt run vit-rank`` (and
``gpt-rank``, ``init-scale-sweep``); a test checks that a short run reproduces their first rows.
The same runs take ``--device cuda``, ``--precision bf16``, ``--text FILE`` / ``--images DIR``, model sizes,
``--resume``, and run unchanged under ``torchrun --nproc_per_node=N`` (the section "At the paper's scale").
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from lrt import (
    CharGPT,
    DigitsTask,
    Runtime,
    TextTask,
    ViT,
    cifar10_split,
    digits_split,
    gradualness,
    half_times,
    load_results,
    reproducible,
    runtime,
    save_results,
    text_split,
    train,
    unigram_cross_entropy,
)
from lrt.book.figures import register_figure
from lrt.book.ledger import Measurement, claim
from lrt.book.tasks import register_benchmark, register_run

CHAPTER = "ch-beyond-diagonal"
DATA = Path(__file__).resolve().parents[1] / "data"

#: The book's models (float64, seeds fixed): width, depth, heads (d_head = 16 for both).
VIT = dict(d_model=64, n_layers=2, n_heads=4, patch=2)
#: The ViT's input on a CIFAR-10 directory (``--images``): 32×32 colour images in 4×4 patches (65 tokens).
CIFAR_VIT = dict(image_size=32, channels=3, patch=4)
GPT = dict(d_model=64, n_layers=2, n_heads=4, context=32)
#: Training: Adam, constant learning rate, mini-batches drawn with replacement; ``every`` is the
#: book's tracking interval k.
VIT_TRAIN = dict(steps=1000, lr=1e-3, batch=64, every=10)
GPT_TRAIN = dict(steps=1000, lr=3e-3, batch=32, every=10)
SWEEP_TRAIN = dict(steps=600, lr=1e-3, batch=64, every=5)
SWEEP_SCALES = (1.0, 0.1, 0.01)
SWEEP_KEEP = 8  # singular values stored per head in the sweep (the file stays small)
SWEEP_HEAD = (0, 0)  # (layer, head) shown in the init-scale figure
INIT_SEED, BATCH_SEED = 0, 1
FILES = {"vit-rank": "ch06_vit_rank.pt", "gpt-rank": "ch06_gpt_rank.pt", "init-scale-sweep": "ch06_init_scale_sweep.pt"}
LOW_RANK_FRACTION = 0.25
INCREMENTAL_RATIO = 2.0  # gradualness (lrt.gradualness, k = 3, level 0.25) at small scales / at scale 1


# --- the runs -----------------------------------------------------------------------------------


def vit_training(*, steps: int, init_scale: float = 1.0, every: int | None = VIT_TRAIN["every"], lr: float = VIT_TRAIN["lr"],
                 optimizer: str = "adam", tie_qk: bool = False, keep: int | None = None, progress: bool = False,
                 model_kwargs: dict | None = None, batch: int | None = None, images=None, runtime: Runtime | None = None,
                 checkpoint=None, checkpoint_every: int | None = None, resume: bool = False) -> dict | None:
    """Train the book's ViT on the digits (or, with ``images``, on a CIFAR-10 binary directory, with
    32×32 colour images cut into 4×4 patches) and return the tracked results (see :func:`lrt.train`);
    ``None`` on processes other than rank 0."""
    rt = runtime or Runtime()
    kwargs = VIT | (CIFAR_VIT if images is not None else {}) | (model_kwargs or {})
    batch = batch or VIT_TRAIN["batch"]
    model = ViT(**kwargs, init_scale=init_scale, tie_qk=tie_qk, generator=INIT_SEED, dtype=rt.dtype)
    config = kwargs | dict(steps=steps, lr=lr, batch=batch, every=every, optimizer=optimizer, init_scale=init_scale, tie_qk=tie_qk)
    task = DigitsTask(digits_split() if images is None else cifar10_split(images), batch=batch)
    return train(model, task, steps=steps, lr=lr, optimizer=optimizer, every=every, keep=keep, generator=BATCH_SEED,
                 progress=progress, config=config | _where(rt, images=images), runtime=rt, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, resume=resume)


def gpt_training(*, steps: int, every: int = GPT_TRAIN["every"], progress: bool = False, text=None, batch: int | None = None,
                 model_kwargs: dict | None = None, runtime: Runtime | None = None, checkpoint=None, checkpoint_every: int | None = None,
                 resume: bool = False) -> dict | None:
    """Train the book's character GPT on the pydoc text (or on the UTF-8 file ``text``) and return the
    tracked results; ``None`` on processes other than rank 0."""
    rt = runtime or Runtime()
    data = text_split(text)
    kwargs = GPT | (model_kwargs or {})
    batch = batch or GPT_TRAIN["batch"]
    model = CharGPT(vocab_size=len(data.vocab), **kwargs, generator=INIT_SEED, dtype=rt.dtype)
    config = kwargs | dict(steps=steps, lr=GPT_TRAIN["lr"], batch=batch, every=every, optimizer="adam", init_scale=1.0,
                           unigram_val_loss=unigram_cross_entropy(data))
    task = TextTask(data, context=kwargs["context"], batch=batch)
    return train(model, task, steps=steps, lr=GPT_TRAIN["lr"], every=every, generator=BATCH_SEED, progress=progress,
                 config=config | _where(rt, text=text), runtime=rt, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                 resume=resume)


def sweep_training(*, steps: int, progress: bool = False, checkpoint=None, **options) -> dict | None:
    """The ViT trained from each scale of ``SWEEP_SCALES``: ``{"scale_1": results, ...}``; ``options``
    as for :func:`vit_training` (one checkpoint file per scale, ``checkpoint`` + ``.scale_…``)."""
    out = {}
    for s in SWEEP_SCALES:
        ckpt = None if checkpoint is None else Path(checkpoint).with_name(f"{Path(checkpoint).name}.{_scale_key(s)}")
        out[_scale_key(s)] = vit_training(steps=steps, init_scale=s, every=SWEEP_TRAIN["every"], lr=SWEEP_TRAIN["lr"],
                                          keep=SWEEP_KEEP, progress=progress, checkpoint=ckpt, **options)
    return None if None in out.values() else out


def _scale_key(scale: float) -> str:
    return f"scale_{scale:g}"


def _where(rt: Runtime, **paths) -> dict:
    """How and on what a run was made, for its config: only what differs from the book's runs (one
    CPU process, float64, the bundled data), so the book's files keep their format."""
    out = {"device": rt.device.type} if rt.device.type != "cpu" else {}
    out |= {"processes": rt.world} if rt.distributed else {}
    out |= {"precision": rt.precision} if rt.precision != "float64" else {}
    return out | {k: str(v) for k, v in paths.items() if v is not None}


@contextmanager
def _session(name: str, device: str, precision: str, work: int, resume: bool):
    """Set up the process (and its process group under torchrun); on rank 0, report the speed."""
    reproducible()
    rt = runtime(device, precision)
    if rt.device.type == "cuda":  # a GPU kernel without a deterministic variant warns instead of stopping the run
        torch.use_deterministic_algorithms(True, warn_only=True)
    start = time.perf_counter()
    try:
        yield rt
    finally:
        rt.close()
    seconds = time.perf_counter() - start
    if rt.main and not resume:
        print(f"{name}: {work} steps in {seconds:.1f} s, {work / seconds:.2f} steps/s "
              f"({rt.world} process{'es' if rt.distributed else ''} on {device}, {precision})", file=sys.stderr)


def _finish(name: str, results: dict | None, out) -> Path | None:
    """Rank 0 writes the results file and returns its path; the other processes return None."""
    if results is None:
        return None
    return save_results(results, _path(name, out))


def _path(name: str, out) -> Path:
    return Path(out) if out is not None else DATA / FILES[name]


def _checkpoint(name: str, out) -> Path:
    path = _path(name, out)
    return path.with_name(path.name + ".ckpt")


def _model_kwargs(d_model, n_layers, n_heads) -> dict:
    return {k: v for k, v in dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads).items() if v is not None}


@register_run("vit-rank", chapter=CHAPTER, description="ViT on the 8×8 digits (or --images CIFAR-10), perturbation spectra every 10 steps (~2.5 min on a shared 2-core CPU)")
def _run_vit(steps=None, out=None, progress=False, *, device="cpu", precision="float64", images=None, batch=None, d_model=None,
             n_layers=None, n_heads=None, resume=False, checkpoint_every=None) -> Path | None:
    steps = steps or VIT_TRAIN["steps"]
    with _session("vit-rank", device, precision, steps, resume) as rt:
        res = vit_training(steps=steps, progress=progress, model_kwargs=_model_kwargs(d_model, n_layers, n_heads), batch=batch,
                           images=images, runtime=rt, checkpoint=_checkpoint("vit-rank", out), checkpoint_every=checkpoint_every,
                           resume=resume)
        return _finish("vit-rank", res, out)


@register_run("gpt-rank", chapter=CHAPTER, description="character GPT on pydoc_data.topics (or --text FILE), perturbation spectra every 10 steps (~3.5 min on a shared 2-core CPU)")
def _run_gpt(steps=None, out=None, progress=False, *, device="cpu", precision="float64", text=None, batch=None, d_model=None,
             n_layers=None, n_heads=None, context=None, resume=False, checkpoint_every=None) -> Path | None:
    steps = steps or GPT_TRAIN["steps"]
    with _session("gpt-rank", device, precision, steps, resume) as rt:
        model_kwargs = _model_kwargs(d_model, n_layers, n_heads) | ({"context": context} if context is not None else {})
        res = gpt_training(steps=steps, progress=progress, text=text, batch=batch, model_kwargs=model_kwargs,
                           runtime=rt, checkpoint=_checkpoint("gpt-rank", out), checkpoint_every=checkpoint_every, resume=resume)
        return _finish("gpt-rank", res, out)


@register_run("init-scale-sweep", chapter=CHAPTER, description="ViT from init scales 1, 0.1, 0.01 (or --images CIFAR-10), spectra every 5 steps (~5 min on a shared 2-core CPU)")
def _run_sweep(steps=None, out=None, progress=False, *, device="cpu", precision="float64", images=None, batch=None, d_model=None,
               n_layers=None, n_heads=None, resume=False, checkpoint_every=None) -> Path | None:
    steps = steps or SWEEP_TRAIN["steps"]
    with _session("init-scale-sweep", device, precision, len(SWEEP_SCALES) * steps, resume) as rt:
        res = sweep_training(steps=steps, progress=progress, model_kwargs=_model_kwargs(d_model, n_layers, n_heads), batch=batch,
                             images=images, runtime=rt, checkpoint=_checkpoint("init-scale-sweep", out),
                             checkpoint_every=checkpoint_every, resume=resume)
        return _finish("init-scale-sweep", res, out)


@lru_cache(maxsize=None)
def results(name: str) -> dict:
    """The committed results of run ``name`` (``vit-rank``, ``gpt-rank`` or ``init-scale-sweep``)."""
    return load_results(DATA / FILES[name], run=name)


# --- measurements -------------------------------------------------------------------------------


def head_mean_stable_rank(res: dict, which: str) -> torch.Tensor:
    """Final stable rank of Δ(W_K W_Qᵀ) (``which="qk"``) or Δ(W_V W_Oᵀ) (``"vo"``), mean over the heads
    of each layer: shape ``(n_layers,)``."""
    return res[f"stable_rank_{which}"][-1].mean(dim=1)


def d_head(res: dict) -> int:
    return res["config"]["d_model"] // res["config"]["n_heads"]


def half_time_spread(res: dict, k: int = 3) -> float:
    """The spread t_k − t_1 of the :func:`lrt.half_times` (an alternative yardstick), averaged
    like :func:`lrt.gradualness`."""
    return gradualness(res, k=k, times="half")


def ordered_fraction(res: dict, k: int = 3) -> float:
    """Share of heads (both perturbations, every layer) whose half-times satisfy t_1 ≤ t_2 ≤ … ≤ t_k."""
    ok = [(half_times(res, w, k).diff(dim=-1) >= 0).all(dim=-1).to(torch.float64).mean() for w in ("qk", "vo")]
    return float(sum(ok) / len(ok))


# --- claims -------------------------------------------------------------------------------------


@claim(
    "P1.vit_low_rank",
    chapter=CHAPTER,
    statement="In a ViT trained with Adam from the ordinary initialisation, the learned perturbations Δ(W_K W_Qᵀ) and Δ(W_V W_Oᵀ) of every head stay low rank (P1 Fig 3).",
    prediction="final stable rank ‖Δ‖_F²/‖Δ‖_2², mean over the 4 heads of a layer, worst layer and worst of the two perturbations, as a fraction of d_head = 16 (Δ itself can have rank up to min(d_model, 2 d_head) = 32)",
    tolerance="≤ 0.25",
)
def _vit_low_rank() -> Measurement:
    res = results("vit-rank")
    means = {w: head_mean_stable_rank(res, w) for w in ("qk", "vo")}
    worst = max(float(m.max()) for m in means.values())
    ref = float(torch.stack([_stable_rank_of(res["sv_qk_init"]), _stable_rank_of(res["sv_vo_init"])]).mean())
    detail = (f"stable ranks QK {_fmt_list(means['qk'])}, VO {_fmt_list(means['vo'])} (layers 1, 2); "
              f"the products at initialisation (random, rank 16) have stable rank {ref:.2f}")
    return Measurement.at_most(worst / d_head(res), LOW_RANK_FRACTION, detail)


def _stable_rank_of(sv: torch.Tensor) -> torch.Tensor:
    from lrt import stable_rank

    return stable_rank(sv).mean()


def _fmt_list(t: torch.Tensor) -> str:
    return "/".join(f"{x:.2f}" for x in t.tolist())


@claim(
    "P1.vit_accuracy",
    chapter=CHAPTER,
    statement="The ViT whose dynamics the chapter shows has learned the task.",
    prediction="validation accuracy on the 359 held-out digits at the end of the committed run",
    tolerance="≥ 0.90",
)
def _vit_accuracy() -> Measurement:
    res = results("vit-rank")
    return Measurement.at_least(float(res["val_accuracy"][-1]), 0.90, f"validation loss {float(res['val_loss'][-1]):.3f}")


@claim(
    "P1.gpt_below_unigram",
    chapter=CHAPTER,
    statement="The character GPT has learned more than character frequencies.",
    prediction="validation loss (nats per character) at the end of the committed run, as a fraction of the unigram baseline's",
    tolerance="≤ 0.8",
)
def _gpt_below_unigram() -> Measurement:
    res = results("gpt-rank")
    val, uni = float(res["val_loss"][-1]), float(res["config"]["unigram_val_loss"])
    return Measurement.at_most(val / uni, 0.8, f"validation loss {val:.3f} against unigram {uni:.3f} nats/char")


@claim(
    "P1.init_scale_incremental",
    chapter=CHAPTER,
    statement="Starting the attention weights smaller than the ordinary scale makes learning markedly more incremental: the top singular directions of the perturbations are picked up one after another, not together (P1 Fig 5).",
    prediction="gradualness = t_3 − t_1 averaged over heads, layers and both perturbations, where t_i is the step (fraction of the 600-step run; 1 if never) at which σ_i(Δ) first reaches 0.25 σ_1(Δ at the end); the smaller of its values at init scales 0.1 and 0.01, divided by its value at scale 1",
    tolerance="≥ 2",
)
def _init_scale_incremental() -> Measurement:
    sweep = results("init-scale-sweep")
    g = [gradualness(sweep[_scale_key(s)]) for s in SWEEP_SCALES]
    h = [half_time_spread(sweep[_scale_key(s)]) for s in SWEEP_SCALES]
    order = [ordered_fraction(sweep[_scale_key(s)]) for s in SWEEP_SCALES]
    scales = ", ".join(f"{s:g}" for s in SWEEP_SCALES)
    detail = (f"gradualness {', '.join(f'{x:.3f}' for x in g)} at scales {scales} (0.1 vs 0.01 is not resolved by the statistic); "
              f"the half-own-final-value statistic: spread {', '.join(f'{x:.3f}' for x in h)}, "
              f"heads with t_1 ≤ t_2 ≤ t_3 {', '.join(f'{x:.2f}' for x in order)}")
    return Measurement.at_least(min(g[1:]) / g[0], INCREMENTAL_RATIO, detail)


# --- figures ------------------------------------------------------------------------------------


def _stable_rank_axes(axes, res: dict, title: str) -> None:
    steps = res["step"].numpy()
    for ax, which, name in zip(axes, ("qk", "vo"), (r"$\Delta(W_K W_Q^\top)$", r"$\Delta(W_V W_O^\top)$")):
        sr = res[f"stable_rank_{which}"].numpy()  # (R, L, H)
        for layer in range(sr.shape[1]):
            mean, std = sr[:, layer].mean(axis=1), sr[:, layer].std(axis=1)
            ax.plot(steps, mean, label=f"layer {layer + 1}")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
        ax.axhline(LOW_RANK_FRACTION * d_head(res), color="k", lw=0.8, ls="--", label=r"$d_{head}/4$")
        ax.set(title=f"{title}: {name}", xlabel="step", ylabel="stable rank", ylim=(0, None))
        ax.legend(fontsize=8)


@register_figure("vit-gpt-stable-rank", chapter=CHAPTER, caption="Stable rank of the learned perturbations through training, mean ± std over the heads of each layer, for the ViT (digits) and the character GPT.")
def _figure_stable_rank():
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex="row")
    _stable_rank_axes(axes[0], results("vit-rank"), "ViT")
    _stable_rank_axes(axes[1], results("gpt-rank"), "GPT")
    fig.tight_layout()
    return fig


@register_figure("vit-gpt-training", chapter=CHAPTER, caption="Training and validation loss of the ViT (with validation accuracy) and of the character GPT (with the unigram baseline).")
def _figure_training():
    import matplotlib.pyplot as plt

    vit, gpt = results("vit-rank"), results("gpt-rank")
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, res in ((ax0, vit), (ax1, gpt)):
        ax.plot(res["step"][1:], res["train_loss"][1:], label="training (mean since last record)")
        ax.plot(res["step"], res["val_loss"], label="validation")
        ax.set(xlabel="step", ylabel="cross-entropy (nats)")
    twin = ax0.twinx()
    twin.plot(vit["step"], vit["val_accuracy"], color="C2", lw=1, label="validation accuracy")
    twin.set(ylabel="accuracy", ylim=(0, 1))
    twin.grid(False)
    ax0.set(title="ViT on 8×8 digits", yscale="log")
    ax1.axhline(gpt["config"]["unigram_val_loss"], color="k", ls="--", lw=0.8, label="unigram baseline")
    ax1.set(title="character GPT on pydoc text")
    lines = ax0.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax0.legend(lines[0] + extra[0], lines[1] + extra[1], loc="lower left", fontsize=8)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register_figure("perturbation-spectra", chapter=CHAPTER, caption="Singular values of the learned perturbation at the end of training against those of the product at initialisation, head 1 of each layer.")
def _figure_spectra():
    import matplotlib.pyplot as plt

    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.4))
    for row, (name, title) in enumerate((("vit-rank", "ViT"), ("gpt-rank", "GPT"))):
        res = results(name)
        for ax, which, label in zip(axes[row], ("qk", "vo"), (r"W_K W_Q^\top", r"W_V W_O^\top")):
            index = np.arange(1, res[f"sv_{which}"].shape[-1] + 1)
            for layer in range(res[f"sv_{which}"].shape[1]):
                ax.semilogy(index, res[f"sv_{which}"][-1, layer, 0], "o-", ms=3, color=f"C{layer}")
                init = res[f"sv_{which}_init"][layer, 0]
                ax.semilogy(index[: d_head(res)], init[: d_head(res)], "x:", ms=5, color=f"C{layer}")
            ax.set(title=f"{title}, head 1: ${label}$", xlabel="index i", ylabel=r"singular value $\sigma_i$")
    # one legend for the four panels: colour = layer, marker = what is shown
    handles = [Line2D([], [], color="C0", lw=2, label="layer 1"), Line2D([], [], color="C1", lw=2, label="layer 2"),
               Line2D([], [], color="0.3", marker="o", ms=5, ls="-", label=r"learned perturbation $\Delta$ at the end"),
               Line2D([], [], color="0.3", marker="x", ms=6, ls=":", label="the product at initialisation")]
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


@register_figure("init-scale-sweep", chapter=CHAPTER, caption="Top singular values of Δ(W_K W_Qᵀ) and Δ(W_V W_Oᵀ) of one ViT head through training, for three scales of the attention weights' initialisation.")
def _figure_sweep():
    import matplotlib.pyplot as plt

    sweep = results("init-scale-sweep")
    layer, head = SWEEP_HEAD
    fig, axes = plt.subplots(2, len(SWEEP_SCALES), figsize=(11, 6.5), sharex=True)
    for col, scale in enumerate(SWEEP_SCALES):
        res = sweep[_scale_key(scale)]
        for row, (which, label) in enumerate((("qk", r"$\Delta(W_K W_Q^\top)$"), ("vo", r"$\Delta(W_V W_O^\top)$"))):
            ax = axes[row, col]
            sv = res[f"sv_{which}"][:, layer, head, :6]
            for i in range(sv.shape[1]):
                ax.plot(res["step"], sv[:, i], lw=1.2, label=f"$\\sigma_{i + 1}$")
            ax.set(title=f"scale {scale:g}: {label}", xlabel="step" if row else None, ylabel="singular value" if col == 0 else None)
            if row == 0 and col == 0:
                ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


# --- benchmark ----------------------------------------------------------------------------------


@register_benchmark("tracking", chapter=CHAPTER, description="ViT training with tracking every k = 10 steps vs the plain loop, same run")
def _bench_tracking(quick: bool = False, device: str = "cpu") -> dict:
    reproducible()
    rt = runtime(device)
    steps = 20 if quick else 200
    every = VIT_TRAIN["every"]
    times = {"plain": [], "tracked": []}
    for _ in range(2):  # alternate, keep the best of each (the machine is shared)
        for name, k in (("plain", None), ("tracked", every)):
            start = time.perf_counter()
            vit_training(steps=steps, every=k, runtime=rt)
            if rt.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    plain, tracked = min(times["plain"]), min(times["tracked"])
    return {
        "ratios": {"tracked_over_plain": tracked / plain},
        "seconds": {"plain": plain, "tracked": tracked},
        "config": {"model": "ViT " + ", ".join(f"{k}={v}" for k, v in VIT.items()), "device": str(rt.device), "steps": steps, "every": every,
                   "records": steps // every + 1, "per_record": "validation loss and accuracy on 359 digits + 2×8 SVDs of 64×64"},
    }
