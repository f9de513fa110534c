"""Instrumented training: the spectra of every head's learned perturbations, through training.

Every ``every`` steps the :class:`Tracker` records, for every head ``h`` of every layer ``l``, the
singular values of

    Δ(W_K W_Qᵀ) = W_K(t) W_Q(t)ᵀ − W_K(0) W_Q(0)ᵀ   and   Δ(W_V W_Oᵀ) = W_V(t) W_O(t)ᵀ − W_V(0) W_O(0)ᵀ

(d_model × d_model, rank ≤ min(d_model, 2 d_head); only those leading values are kept), their stable
rank ‖Δ‖_F² / ‖Δ‖_2² (0 for Δ = 0), the training loss (mean of the mini-batch losses since the last
record) and the validation loss (and accuracy, for classification). The result is a plain dict of
tensors (plus a ``config`` dict of numbers and strings) that :func:`save_results` writes with
``torch.save`` and :func:`load_results` reads back with ``weights_only=True``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lrt.core.errors import LrtError, LrtTypeError
from lrt.core import checks as _checks
from lrt.transformers.datasets import ImageSplit, TextSplit, text_batch, text_windows
from lrt.transformers.distributed import Runtime
from lrt.transformers.models import CharGPT, ViT, attention_layers, attention_products, layer_dims

__all__ = [
    "stable_rank",
    "perturbation_spectra",
    "Tracker",
    "DigitsTask",
    "TextTask",
    "train",
    "OPTIMIZERS",
    "activation_times",
    "half_times",
    "gradualness",
]

#: Optimisers accepted by :func:`train` (Adam, as in P1, by default).
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def stable_rank(sv: torch.Tensor) -> torch.Tensor:
    """Stable rank ‖Δ‖_F² / ‖Δ‖_2² from singular values ``sv`` of shape ``(..., r)`` (any order);
    shape ``(...)``. Defined as 0 where all singular values are 0 (Δ = 0, e.g. at step 0).

    >>> stable_rank(torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    tensor([1.2500, 0.0000])

    Defined in :ref:`ch-beyond-diagonal`.
    """
    sv = _checks.tensor("sv", sv, finite=True)
    if sv.dim() < 1:
        raise LrtError(f"sv: expected singular values with a last axis, got shape {tuple(sv.shape)}")
    top = sv.abs().amax(dim=-1)
    fro = (sv**2).sum(dim=-1)
    return torch.where(top > 0, fro / torch.where(top > 0, top, 1.0) ** 2, 0.0)


def perturbation_spectra(model: torch.nn.Module, init: tuple[torch.Tensor, torch.Tensor], keep: int | None = None, *,
                         runtime: Runtime | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values (descending, float64) of Δ(W_K W_Qᵀ) and Δ(W_V W_Oᵀ) of every head, relative to
    the products ``init`` (from :func:`lrt.attention_products` at initialisation).

    Arguments:
        model: a model with :class:`lrt.SelfAttention` or ``torch.nn.MultiheadAttention`` layers.
        init: (W_K W_Qᵀ, W_V W_Oᵀ) at initialisation, each ``(n_layers, n_heads, d_model, d_model)``.
        keep: number of leading singular values kept (default min(d_model, 2 d_head), the rank bound).
        runtime: with several processes (:class:`lrt.Runtime`), each process
            computes the SVDs of its share of the heads and every process receives all of them.

    Returns:
        two float64 tensors ``(n_layers, n_heads, keep)`` on the CPU.

    >>> vit = ViT(d_model=8, n_layers=1, n_heads=2)
    >>> qk, vo = perturbation_spectra(vit, attention_products(vit))
    >>> tuple(qk.shape), float(qk.abs().max())
    ((1, 2, 8), 0.0)

    Defined in :ref:`ch-beyond-diagonal`.
    """
    qk, vo = attention_products(model)
    if not (isinstance(init, tuple) and len(init) == 2 and all(isinstance(t, torch.Tensor) for t in init)):
        raise LrtTypeError("init: expected a pair of tensors (W_K W_Qᵀ, W_V W_Oᵀ) from attention_products")
    if init[0].shape != qk.shape or init[1].shape != vo.shape:
        raise LrtError(f"init: expected two tensors of shape {tuple(qk.shape)}, got {tuple(init[0].shape)} and {tuple(init[1].shape)}")
    d_model, _, d_head = layer_dims(attention_layers(model)[0])
    bound = min(d_model, 2 * d_head)
    keep = bound if keep is None else _checks.positive_int("keep", keep)
    delta = torch.stack([qk - init[0].to(qk), vo - init[1].to(vo)])  # (2, L, H, d, d) float64
    sv = _svdvals(delta.flatten(0, 2), runtime).reshape(*delta.shape[:3], -1)[..., :keep].cpu()
    return sv[0], sv[1]


def _svdvals(matrices: torch.Tensor, runtime: Runtime | None) -> torch.Tensor:
    """Singular values of a batch of matrices; with several processes each computes a share and
    all-gathers the rest."""
    if runtime is None or not runtime.distributed:
        return torch.linalg.svdvals(matrices)
    import torch.distributed as dist

    n, per = matrices.shape[0], -(-matrices.shape[0] // runtime.world)
    mine = torch.linalg.svdvals(matrices[runtime.rank * per : (runtime.rank + 1) * per])
    padded = torch.zeros((per, matrices.shape[-1]), dtype=mine.dtype, device=mine.device)
    padded[: mine.shape[0]] = mine
    parts = [torch.empty_like(padded) for _ in range(runtime.world)]
    dist.all_gather(parts, padded)
    return torch.cat(parts)[:n]


class Tracker:
    """Records the perturbation spectra and losses of ``model`` (see the module docstring).

    Create it before training (it stores the products at initialisation); call :meth:`record`
    every k steps; :meth:`results` returns the dict of tensors. ``keep`` limits the singular values
    stored per head (default: all min(d_model, 2 d_head)); stable ranks always use all of them. The
    model may be lrt's (:class:`lrt.ViT`, :class:`lrt.CharGPT`) or any model built from
    ``torch.nn.MultiheadAttention`` (e.g. ``nn.TransformerEncoder``). With several processes
    (``runtime``), every process calls :meth:`record` (each computes a share of the SVDs); the spectra
    are gathered and every process holds the same rows.

    >>> vit = ViT(d_model=8, n_layers=1, n_heads=2)
    >>> tracker = Tracker(vit)
    >>> tracker.record(0, train_loss=2.3, val_loss=2.3)
    >>> sorted(tracker.results())[:4]
    ['config', 'stable_rank_qk', 'stable_rank_vo', 'step']

    Defined in :ref:`ch-beyond-diagonal`.
    """

    def __init__(self, model: torch.nn.Module, *, keep: int | None = None, runtime: Runtime | None = None):
        self.model = model
        self.runtime = runtime
        self.init = attention_products(model)
        d_model, _, d_head = layer_dims(attention_layers(model)[0])
        self.bound = min(d_model, 2 * d_head)
        self.keep = self.bound if keep is None else min(self.bound, _checks.positive_int("keep", keep))
        self.rows: dict[str, list] = {}

    def record(self, step: int, *, train_loss: float, val_loss: float, **extra: float) -> None:
        """Append one row: the step, the losses, any ``extra`` scalars, and the head spectra."""
        sv_qk, sv_vo = perturbation_spectra(self.model, self.init, runtime=self.runtime)  # all min(d_model, 2 d_head) values
        row = {"step": int(step), "train_loss": float(train_loss), "val_loss": float(val_loss), **{k: float(v) for k, v in extra.items()}}
        row |= {"sv_qk": sv_qk[..., : self.keep], "sv_vo": sv_vo[..., : self.keep]}
        row |= {"stable_rank_qk": stable_rank(sv_qk), "stable_rank_vo": stable_rank(sv_vo)}
        for key, value in row.items():
            self.rows.setdefault(key, []).append(value)

    def results(self, config: dict | None = None) -> dict:
        """The records as tensors: ``step`` ``(R,)`` int64; ``train_loss``, ``val_loss`` (and extras)
        ``(R,)``; ``sv_qk``, ``sv_vo`` ``(R, L, H, r)``; ``stable_rank_qk``, ``stable_rank_vo``
        ``(R, L, H)``; ``sv_qk_init``, ``sv_vo_init`` ``(L, H, r)`` (spectra of the products themselves at
        initialisation) and ``sv_qk_end``, ``sv_vo_end`` (of the products now); ``config``."""
        out: dict = {}
        for key, values in self.rows.items():
            if isinstance(values[0], torch.Tensor):
                out[key] = torch.stack(values)
            else:
                out[key] = torch.tensor(values, dtype=torch.int64 if key == "step" else torch.float64)
        now = attention_products(self.model)
        for name, init, end in (("qk", self.init[0], now[0]), ("vo", self.init[1], now[1])):
            out[f"sv_{name}_init"] = torch.linalg.svdvals(init.to(torch.float64))[..., : self.keep].cpu()
            out[f"sv_{name}_end"] = torch.linalg.svdvals(end.to(torch.float64))[..., : self.keep].cpu()
        out["config"] = dict(config or {})
        return out

    def state(self) -> dict:
        """What a checkpoint needs to continue recording: the products at initialisation and the rows."""
        return {"init": tuple(t.cpu() for t in self.init), "rows": {k: list(v) for k, v in self.rows.items()}}

    def restore(self, state: dict) -> None:
        device = self.init[0].device
        self.init = tuple(t.to(device) for t in state["init"])
        self.rows = {k: list(v) for k, v in state["rows"].items()}


def _pixels(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Images as ``dtype``: float images as they are, raw bytes (CIFAR-10) divided by 255."""
    return x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)


@dataclass(frozen=True)
class DigitsTask:
    """Classify images (the 8×8 digits, or any :class:`lrt.transformers.datasets.ImageSplit` such as
    CIFAR-10): mini-batches of ``batch`` training images drawn with replacement; validation on the
    whole held-out split (loss and accuracy), ``eval_batch`` images at a time.

    Defined in :ref:`ch-beyond-diagonal`.
    """

    data: ImageSplit
    batch: int = 64
    eval_batch: int = 1024

    def sample(self, gen: torch.Generator, dtype: torch.dtype, part: slice | None = None):
        """A global mini-batch (or, with ``part``, this process's share of it), on the CPU."""
        idx = torch.randint(0, self.data.y_train.numel(), (self.batch,), generator=gen)
        if part is not None:
            idx = idx[part]
        return _pixels(self.data.x_train[idx], dtype), self.data.y_train[idx]

    def loss(self, model, x, y) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model, dtype: torch.dtype, device: torch.device | str = "cpu") -> dict:
        x, y = self.data.x_val, self.data.y_val.to(device)
        logits = torch.cat([model(_pixels(x[i : i + self.eval_batch], dtype).to(device)) for i in range(0, len(x), self.eval_batch)])
        return {
            "val_loss": float(F.cross_entropy(logits, y)),
            "val_accuracy": float((logits.argmax(dim=1) == y).to(torch.float64).mean()),
        }


@dataclass(frozen=True)
class TextTask:
    """Next-character prediction on a :class:`lrt.transformers.datasets.TextSplit`: random windows of ``context``
    characters for training; validation on ``val_windows`` fixed, evenly spaced windows of the
    validation text (mean cross-entropy in nats per character).

    Defined in :ref:`ch-beyond-diagonal`.
    """

    data: TextSplit
    context: int = 64
    batch: int = 32
    val_windows: int = 64

    def sample(self, gen: torch.Generator, dtype: torch.dtype, part: slice | None = None):
        """A global mini-batch of windows (or, with ``part``, this process's share of it), on the CPU."""
        x, y = text_batch(self.data.train, context=self.context, batch=self.batch, generator=gen)
        return (x, y) if part is None else (x[part], y[part])

    def loss(self, model, x, y) -> torch.Tensor:
        return F.cross_entropy(model(x).flatten(0, 1), y.flatten())

    @torch.no_grad()
    def evaluate(self, model, dtype: torch.dtype, device: torch.device | str = "cpu") -> dict:
        x, y = text_windows(self.data.val, context=self.context, count=self.val_windows)
        return {"val_loss": float(self.loss(model, x.to(device), y.to(device)))}


def train(model: torch.nn.Module, task, *, steps: int, lr: float = 1e-3, optimizer: str = "adam", every: int | None = 20,
          keep: int | None = None, generator=0, progress: bool = False, config: dict | None = None, runtime: Runtime | None = None,
          checkpoint: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = False) -> dict | None:
    """Train ``model`` on ``task`` for ``steps`` steps and return the tracker's results.

    Arguments:
        model: a :class:`lrt.ViT` or :class:`lrt.CharGPT`, or any model with ``SelfAttention`` or
            ``torch.nn.MultiheadAttention`` layers whose input the task provides.
        task: a :class:`DigitsTask` (any :class:`lrt.transformers.datasets.ImageSplit`) or :class:`TextTask`.
        steps: number of optimiser steps (in total, when resuming).
        lr: learning rate.
        optimizer: a key of :data:`OPTIMIZERS` (``"adam"`` or ``"sgd"``).
        every: record every this many steps (and at step 0 and the last step); ``None``: no tracking
            at all (the plain loop of the benchmark), the result then holds only the final losses.
        keep: singular values stored per head (see :class:`Tracker`).
        generator: ``torch.Generator`` or int seed for the mini-batches.
        progress: show a tqdm bar.
        config: numbers and strings stored with the results.
        runtime: device, processes and arithmetic (:func:`lrt.runtime`); default:
            one process on the model's device, no autocast. With several processes the model is
            wrapped in DistributedDataParallel, each process trains on its share of every global
            mini-batch, and only rank 0 evaluates; the other ranks return ``None``.
        checkpoint: a file to which rank 0 writes everything needed to continue (model, optimiser,
            the batch generator's state, the records) every ``checkpoint_every`` steps and at the end.
        checkpoint_every: a multiple of ``every`` (default ``10 * every``).
        resume: continue from ``checkpoint`` if it exists (the same run, possibly with more ``steps``);
            the continued run's results equal those of an uninterrupted one.

    Returns:
        the dict of :meth:`Tracker.results` (``step``, losses, spectra, ``config``).

    >>> vit = ViT(d_model=8, n_layers=1, n_heads=2)
    >>> from lrt.transformers.datasets import digits_split
    >>> out = train(vit, DigitsTask(digits_split()), steps=4, every=2)
    >>> out["step"].tolist(), tuple(out["sv_vo"].shape)
    ([0, 2, 4], (3, 1, 2, 8))

    Defined in :ref:`ch-beyond-diagonal`.
    """
    if not isinstance(model, torch.nn.Module):
        raise LrtTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(task, (DigitsTask, TextTask)):
        raise LrtTypeError(f"task: expected a DigitsTask or TextTask, got {type(task).__name__}")
    if isinstance(task, DigitsTask) != isinstance(model, ViT) and isinstance(model, (ViT, CharGPT)):
        raise LrtError(f"task: a {type(model).__name__} cannot be trained on a {type(task).__name__}")
    steps = _checks.positive_int("steps", steps)
    lr = _checks.positive_float("lr", lr)
    _checks.choice("optimizer", optimizer, OPTIMIZERS)
    if every is not None:
        every = _checks.positive_int("every", every)
    gen = _checks.generator("generator", generator)
    if runtime is None:
        first = next(model.parameters())
        runtime = Runtime(first.device, precision="float64" if first.dtype == torch.float64 else "float32")
    elif not isinstance(runtime, Runtime):
        raise LrtTypeError(f"runtime: expected an lrt.Runtime, got {type(runtime).__name__}")
    if checkpoint is not None or resume:
        if every is None or checkpoint is None:
            raise LrtError("checkpoint: expected a file and tracking (every) to write or resume checkpoints")
        checkpoint = Path(checkpoint)
        checkpoint_every = 10 * every if checkpoint_every is None else _checks.positive_int("checkpoint_every", checkpoint_every)
        if checkpoint_every % every:
            raise LrtError(f"checkpoint_every: expected a multiple of every = {every}, got {checkpoint_every}")
    model.to(runtime.device)
    dtype = next(model.parameters()).dtype
    net = model
    if runtime.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    tracker = Tracker(model, keep=keep, runtime=runtime) if every is not None else None
    settings = {"lr": lr, "optimizer": optimizer, "every": every, "keep": keep, "config": {k: v for k, v in (config or {}).items() if k != "steps"}}
    running, count, start = 0.0, 0, 0
    if resume and checkpoint.is_file():
        start, shares = _restore(checkpoint, settings, steps, model, opt, gen, tracker)
        if len(shares) == runtime.world:  # each process takes up its own running sum again
            running, count = shares[runtime.rank]
        else:  # a different number of processes: rank 0 carries the sums of all of them
            running = sum(r for r, _ in shares) if runtime.main else 0.0
            count = sum(c for _, c in shares) if runtime.main else 0
        if tracker.rows["step"][-1] % every:  # the closing record of a shorter run: recorded again below
            for values in tracker.rows.values():
                values.pop()

    def record(step):
        nonlocal running, count
        shares = [(running, count)]
        if runtime.distributed:  # each process holds the sum of its shares' mean losses
            import torch.distributed as dist

            mine = torch.tensor([running, float(count)], dtype=torch.float64, device=runtime.device)
            parts = [torch.empty_like(mine) for _ in range(runtime.world)]
            dist.all_gather(parts, mine)
            shares = [(float(t[0]), int(t[1])) for t in parts]
        total, n = shares[0]
        for r, c in shares[1:]:  # in rank order, the same on every process
            total, n = total + r, n + c
        train_loss = total / n if n else math.nan  # no mini-batch yet at step 0
        metrics = {"val_loss": math.nan}
        if runtime.main:
            model.eval()
            metrics = task.evaluate(model, dtype, runtime.device)
            model.train()
        tracker.record(step, train_loss=train_loss, **metrics)
        if step % every == 0:
            running, count = 0.0, 0
            shares = [(0.0, 0)] * len(shares)
        if checkpoint is not None and runtime.main and step > 0 and (step % checkpoint_every == 0 or step == steps):
            _save_checkpoint(checkpoint, settings, step, model, opt, gen, tracker, shares)

    if tracker is not None and not tracker.rows:
        record(0)
    part = runtime.shard(task.batch) if runtime.distributed else None
    for step in tqdm(range(start + 1, steps + 1), disable=not (progress and runtime.main), desc=type(model).__name__, leave=False,
                     initial=start, total=steps):
        x, y = task.sample(gen, dtype, part)
        x, y = x.to(runtime.device), y.to(runtime.device)
        with runtime.autocast():
            loss = task.loss(net, x, y)
        value = loss.item()
        if not math.isfinite(value):
            raise LrtError(f"lr: training diverged at step {step} (loss {value}); expected a smaller learning rate than {lr}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += value
        count += 1
        if tracker is not None and step % every == 0:
            record(step)
    if tracker is None:
        model.eval()
        out = {key: torch.tensor([value]) for key, value in task.evaluate(model, dtype, runtime.device).items()}
        model.train()
        return out | {"train_loss": torch.tensor([running / max(count, 1)]), "config": dict(config or {})}
    if tracker.rows["step"][-1] != steps:
        record(steps)
    return tracker.results(config) if runtime.main else None


def _save_checkpoint(path: Path, settings: dict, step: int, model, opt, gen, tracker: Tracker, shares: list) -> None:
    """``shares``: every process's (sum of its mini-batch losses since the last record, their number)."""
    state = {"format": "lrt-checkpoint-1", "settings": settings, "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "generator": gen.get_state(), "tracker": tracker.state(), "shares": [list(s) for s in shares]}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # a checkpoint is never half-written


def _restore(path: Path, settings: dict, steps: int, model, opt, gen, tracker: Tracker) -> tuple[int, list]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        ok = isinstance(state, dict) and state.get("format") == "lrt-checkpoint-1"
    except Exception as err:  # torch raises several types for a damaged or foreign file
        raise LrtError(f"checkpoint: {str(path)!r} is not a readable lrt checkpoint ({type(err).__name__}); delete it or start without --resume") from None
    if not ok:
        raise LrtError(f"checkpoint: {str(path)!r} is not an lrt checkpoint; delete it or start without --resume")
    theirs = state["settings"]
    differ = sorted({k for k in settings if k != "config" and settings[k] != theirs.get(k)}
                    | {k for k in settings["config"].keys() | theirs["config"].keys() if settings["config"].get(k) != theirs["config"].get(k)})
    if differ:
        raise LrtError(f"checkpoint: {str(path)!r} belongs to a different run ({', '.join(differ)} differ); "
                       "delete it, choose another --out, or repeat the original settings")
    if state["step"] > steps:
        raise LrtError(f"steps: the checkpoint {str(path)!r} is at step {state['step']}; expected steps ≥ {state['step']}, got {steps}")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    tracker.restore(state["tracker"])
    return state["step"], [(float(r), int(c)) for r, c in state["shares"]]


def _sv_series(results: dict, which: str, k: int) -> torch.Tensor:
    if not isinstance(results, dict) or "step" not in results:
        raise LrtTypeError("results: expected a results dict with a 'step' entry (from lrt.train or lrt.load_results)")
    _checks.choice("which", which, ("qk", "vo"))
    k = _checks.positive_int("k", k)
    sv = results[f"sv_{which}"]
    if sv.shape[-1] < k:
        raise LrtError(f"k: expected at most the {sv.shape[-1]} stored singular values, got {k}")
    return sv[..., :k]


def activation_times(results: dict, which: str, k: int = 3, level: float = 0.25) -> torch.Tensor:
    """When each of the k leading directions of a perturbation is learned, on a common yardstick: for
    every head, the first recorded step at which σ_i(t) ≥ ``level`` · σ_1(T) (the head's final top
    singular value), as a fraction of the run, and 1 if it never happens within the run. Since
    σ_1(t) ≥ σ_2(t) ≥ …, the times are ordered, t_1 ≤ … ≤ t_k; their spread is what carries information.

    Arguments:
        results: tracked results (:func:`train`), with ``step`` ``(R,)`` and ``sv_qk``/``sv_vo`` ``(R, L, H, r)``.
        which: ``"qk"`` for Δ(W_K W_Qᵀ) or ``"vo"`` for Δ(W_V W_Oᵀ).
        k: number of leading directions.
        level: the yardstick, a fraction of σ_1(T) in (0, 1].

    Returns:
        ``(L, H, k)`` float64.

    >>> res = {"step": torch.tensor([0, 5, 10]), "sv_qk": torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.4]])[:, None, None]}
    >>> activation_times(res, "qk", k=2)
    tensor([[[0.5000, 1.0000]]])

    Defined in :ref:`ch-beyond-diagonal`.
    """
    sv = _sv_series(results, which, k)
    level = _checks.fraction("level", level)
    reached = sv >= level * sv[-1, ..., :1]
    first = reached.to(torch.int64).argmax(dim=0)  # index of the first True
    steps = results["step"].to(torch.float64)
    return torch.where(reached.any(dim=0), steps[first] / steps[-1], torch.ones((), dtype=torch.float64))


def half_times(results: dict, which: str, k: int = 3) -> torch.Tensor:
    """For every head, the first recorded step at which σ_i(t) reaches half of *its own* final value
    σ_i(T), i = 1..k, as a fraction of the run: ``(L, H, k)``. (For a direction that never grows,
    the time this returns is set by noise; :func:`activation_times` uses a common yardstick instead.)

    >>> res = {"step": torch.tensor([0, 5, 10]), "sv_qk": torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.4]])[:, None, None]}
    >>> half_times(res, "qk", k=2)
    tensor([[[0.5000, 1.0000]]])

    Defined in :ref:`ch-beyond-diagonal`.
    """
    sv = _sv_series(results, which, k)
    first = (sv >= 0.5 * sv[-1]).to(torch.int64).argmax(dim=0)  # the last row always qualifies
    steps = results["step"].to(torch.float64)
    return steps[first] / steps[-1]


def gradualness(results: dict, k: int = 3, level: float = 0.25, *, times: str = "activation") -> float:
    """The spread t_k − t_1 of the :func:`activation_times` (or, with ``times="half"``, of the
    :func:`half_times`), averaged over every head of every layer and over both perturbations: 0 when
    the k leading directions are learned together, up to 1 when only the first is learned in the run.

    >>> res = {"step": torch.tensor([0, 5, 10]), "sv_qk": torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.4]])[:, None, None]}
    >>> gradualness(res | {"sv_vo": res["sv_qk"]}, k=2)
    0.5

    Defined in :ref:`ch-beyond-diagonal`.
    """
    _checks.choice("times", times, ("activation", "half"))
    spreads = []
    for which in ("qk", "vo"):
        t = activation_times(results, which, k, level) if times == "activation" else half_times(results, which, k)
        spreads.append((t[..., -1] - t[..., 0]).mean())
    return float(sum(spreads) / len(spreads))
