"""Training by minibatch SGD (or Adam), and the seeded default run of Part II."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from tqdm import tqdm

from lrt.core import checks as _checks
from lrt.core.errors import LrtError, LrtTypeError
from lrt.p2.attention import relevant_mass
from lrt.p2.config import P2Config
from lrt.p2.data import PatternData, check_data, make_patterns, sample_pattern_data
from lrt.p2.losses import check_model, hinge_loss, trainable_parameters, zero_one_error
from lrt.p2.network import WEIGHTS, OneLayerTransformer

#: the training loss and error are logged on this many training samples (to keep logging cheap)
TRAIN_LOG_SAMPLES = 500


@dataclass(frozen=True)
class TrainLog:
    """Logged every ``log_every`` steps (and at 0 and T): ``steps`` ``(k,)`` int64, and ``(k,)``
    float64 series ``train_hinge``, ``train_error`` (on the first ``TRAIN_LOG_SAMPLES`` training
    samples, to keep logging cheap), ``test_hinge``, ``test_error`` and ``attention`` (relevant
    attention mass, :func:`~lrt.p2.relevant_attention`) on the whole test set."""

    steps: torch.Tensor
    train_hinge: torch.Tensor
    train_error: torch.Tensor
    test_hinge: torch.Tensor
    test_error: torch.Tensor
    attention: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def train(
    model: nn.Module,
    train_data: PatternData,
    test_data: PatternData,
    *,
    steps: int,
    batch: int,
    lr: float,
    log_every: int = 50,
    generator,
    optimizer: str = "sgd",
    progress: bool = False,
) -> TrainLog:
    """Minibatch SGD (or Adam) on the mean hinge loss, in place on ``model``'s trainable parameters.

    Each step draws ``batch`` indices uniformly *with* replacement from the training set (the
    generator's only use), takes the autograd gradient of the batch-mean hinge loss and moves
    every parameter with ``requires_grad`` by −η·gradient (``optimizer="sgd"``), or by a step of
    ``torch.optim.Adam`` with learning rate η and its default β's (``"adam"``, the usual optimiser
    of LoRA adapters). Training stops with an error at the first non-finite minibatch loss, naming
    the step and the value.

    Arguments:
        model: a :class:`OneLayerTransformer` or :class:`LoRATransformer` (float64) whose head fits
            the data's classes.
        train_data, test_data: :class:`PatternData` with finite tokens.
        steps, batch, lr: T, B and η.
        log_every: logging period (steps).
        generator: torch.Generator or int seed for the minibatches.
        optimizer: ``sgd`` or ``adam``.
        progress: show a tqdm bar.

    Returns:
        :class:`TrainLog`.

    >>> cfg = P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=16)
    >>> U = make_patterns(8, 8, generator=0)
    >>> tr, te = sample_pattern_data(cfg, 64, U, generator=1), sample_pattern_data(cfg, 32, U, generator=2)
    >>> log = train(OneLayerTransformer(8, 16, generator=3), tr, te, steps=20, batch=16, lr=1.0, log_every=10, generator=4)
    >>> log.steps.tolist(), bool(log.train_hinge[-1] < log.train_hinge[0])
    ([0, 10, 20], True)

    Defined in :ref:`ch-p2-model`.
    """
    train_data = check_data("train_data", train_data)
    test_data = check_data("test_data", test_data)
    check_model("model", model, train_data)
    check_model("model", model, test_data)
    steps = _checks.positive_int("steps", steps)
    batch = _checks.positive_int("batch", batch)
    lr = _checks.positive_float("lr", lr)
    log_every = _checks.positive_int("log_every", log_every)
    gen = _checks.generator("generator", generator)
    _checks.choice("optimizer", optimizer, ("sgd", "adam"))
    params = [p for _, p in trainable_parameters(model)]
    adam = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else None
    rows: list[tuple] = []

    head = train_data.X[:TRAIN_LOG_SAMPLES], train_data.y[:TRAIN_LOG_SAMPLES]

    def log(t: int):
        with torch.no_grad():
            out_train = model(head[0])
            out_test, attn = model(test_data.X, return_attention=True)
        rows.append((
            t, hinge_loss(out_train, head[1]).item(), zero_one_error(out_train, head[1]),
            hinge_loss(out_test, test_data.y).item(), zero_one_error(out_test, test_data.y),
            relevant_mass(attn, test_data),
        ))

    log(0)
    n = len(train_data)
    for t in tqdm(range(1, steps + 1), disable=not progress, desc="SGD", leave=False):
        idx = torch.randint(0, n, (batch,), generator=gen)
        loss = hinge_loss(model(train_data.X[idx]), train_data.y[idx])
        if not math.isfinite(loss.item()):
            raise LrtError(
                f"lr: training diverged: the minibatch loss is {loss.item()} at step {t} of {steps} "
                f"(lr = {lr:g} with {optimizer}; a smaller step size may converge)"
            )
        grads = torch.autograd.grad(loss, params)
        if adam is not None:
            for p, g in zip(params, grads):
                p.grad = g
            adam.step()
        else:
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= lr * g
        if t % log_every == 0 or t == steps:
            log(t)
    cols = list(zip(*rows))
    return TrainLog(torch.tensor(cols[0]), *(torch.tensor(c, dtype=torch.float64) for c in cols[1:]))


@dataclass
class P2Run:
    """One training run: ``config``, ``seed``, the trained ``model``, ``init`` (the four initial
    matrices by name), ``train_data``, ``test_data`` and the :class:`TrainLog` ``log``."""

    config: P2Config
    seed: int
    model: OneLayerTransformer
    init: dict[str, torch.Tensor]
    train_data: PatternData
    test_data: PatternData
    log: TrainLog

    def delta(self, name: str) -> torch.Tensor:
        """ΔW = W⁽ᵀ⁾ − W⁽⁰⁾ for ``name`` in W_Q, W_K, W_V, W_O."""
        _checks.choice("name", name, WEIGHTS)
        return (getattr(self.model, name) - self.init[name]).detach()

    def initial_model(self) -> OneLayerTransformer:
        """A copy of the network at initialisation."""
        net = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, W in self.init.items():
                getattr(net, name).copy_(W)
        return net


def seeds_for(seed: int, k: int) -> list[int]:
    """k child seeds derived from ``seed`` (patterns, train, test, init, batches, …): k draws in
    [0, 2⁶²) of a torch generator seeded with ``seed`` (torch's generator keeps the low 32 bits of a
    seed, so each child is effectively a 32-bit seed)."""
    gen = _checks.generator("seed", seed)
    return torch.randint(0, 2**62, (k,), generator=gen).tolist()


def _part_seeds(seed: int, part_seeds) -> list[int]:
    if part_seeds is None:
        return seeds_for(seed, 5)
    seeds = list(part_seeds) if isinstance(part_seeds, (list, tuple)) else None
    if seeds is None or len(seeds) != 5 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise LrtError(
            f"part_seeds: expected five ints >= 0 (patterns, training set, test set, initialisation, minibatches), got {part_seeds!r}"
        )
    return seeds


def setup_p2(
    config: P2Config = P2Config(), seed: int = 0, *, part_seeds: Sequence[int] | None = None
) -> tuple[OneLayerTransformer, PatternData, PatternData, int]:
    """The untrained network, the training and test sets of ``config`` from ``seed``, and the seed of
    the minibatches: everything :func:`run_p2` trains, without training it.

    From ``seed`` five child seeds are drawn (:func:`seeds_for`): patterns, training set, test set,
    initialisation, minibatches; ``part_seeds`` gives those five seeds directly instead (another
    seeding of the same model). The C-class variant (``n_classes > 2`` or ``multi_output``) has a
    C-output head.

    >>> net, train_data, test_data, batch_seed = setup_p2(P2Config(n_train=8, n_test=4), seed=0)
    >>> tuple(train_data.X.shape), tuple(net.W_O.shape)
    ((8, 20, 20), (200, 20))

    Defined in :ref:`ch-p2-model`.
    """
    if not isinstance(config, P2Config):
        raise LrtTypeError(f"config: expected a P2Config, got {type(config).__name__}")
    s_pat, s_train, s_test, s_init, s_batch = _part_seeds(seed, part_seeds)
    patterns = make_patterns(config.d, config.M, generator=s_pat)
    train_data = sample_pattern_data(config, config.n_train, patterns, generator=s_train)
    test_data = sample_pattern_data(config, config.n_test, patterns, generator=s_test)
    model = OneLayerTransformer(config.d, config.m, n_outputs=config.n_outputs, xi=config.xi, generator=s_init)
    return model, train_data, test_data, s_batch


def run_p2(
    config: P2Config = P2Config(), seed: int = 0, *, steps: int | None = None, progress: bool = False,
    part_seeds: Sequence[int] | None = None,
) -> P2Run:
    """Build the data and the network of ``config`` from ``seed`` (or ``part_seeds``, :func:`setup_p2`)
    and train them for ``steps`` (default ``config.steps``) steps of SGD.

    A shorter run is a prefix of a longer one: the minibatches do not depend on ``steps``.

    >>> r = run_p2(P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=16,
    ...                     n_train=64, n_test=32, batch=16, steps=20, log_every=10), seed=0)
    >>> tuple(r.delta("W_V").shape), r.log.steps.tolist()
    ((8, 8), [0, 10, 20])

    Defined in :ref:`ch-p2-model`.
    """
    model, train_data, test_data, s_batch = setup_p2(config, seed, part_seeds=part_seeds)
    init = {k: v.detach().clone() for k, v in model.weights().items()}
    log = train(
        model, train_data, test_data, steps=config.steps if steps is None else steps, batch=config.batch,
        lr=config.lr, log_every=config.log_every, generator=s_batch, progress=progress,
    )
    return P2Run(config, seed, model, init, train_data, test_data, log)
