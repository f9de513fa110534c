"""Lucky neurons (the large rows of W_O) and magnitude pruning."""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch

from lrt.core import checks as _checks
from lrt.core.errors import LrtError, LrtTypeError
from lrt.p2.data import PatternData
from lrt.p2.losses import evaluate
from lrt.p2.network import OneLayerTransformer

ORDERS = ("smallest", "largest", "random")


def row_norms(W_O: torch.Tensor) -> torch.Tensor:
    """‖W_O[i]‖ for each neuron i, shape ``(m,)``.

    >>> row_norms(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    tensor([5., 1.])

    Defined in :ref:`ch-lucky-neurons`.
    """
    W_O = _checks.tensor("W_O", W_O, shape=(None, None))
    return torch.linalg.vector_norm(W_O, dim=1)


def _norms(norms) -> torch.Tensor:
    norms = _checks.tensor("norms", norms, shape=(None,))
    if norms.numel() == 0:
        raise LrtError("norms: expected the row norms of at least one neuron, got an empty tensor")
    if bool((norms < 0).any()):
        raise LrtError(f"norms: expected row norms >= 0, got a minimum of {norms.min().item():.3g}")
    return norms


def lucky_fraction(norms: torch.Tensor, threshold: float = 0.5) -> float:
    """Fraction f of neurons with ‖W_O[i]‖ > threshold · max_i ‖W_O[i]‖ (the "lucky" ones).

    >>> lucky_fraction(torch.tensor([1.0, 0.9, 0.1, 0.2]))
    0.5

    Defined in :ref:`ch-lucky-neurons`.
    """
    norms = _norms(norms)
    threshold = _checks.fraction("threshold", threshold)
    return (norms > threshold * norms.max()).to(torch.float64).mean().item()


def prune_indices(norms: torch.Tensor, R: float, order: str = "smallest", *, generator=None) -> torch.Tensor:
    """Indices of the round(R·m) neurons to prune: smallest or largest ‖W_O[i]‖ first, or random.

    Ties are broken by index (a stable sort). ``random`` needs ``generator``.

    Arguments:
        norms: ``(m,)`` row norms.
        R: pruning rate in [0, 1].
        order: ``smallest``, ``largest`` or ``random``.

    Returns:
        ``(round(R m),)`` int64, sorted.

    >>> prune_indices(torch.tensor([0.3, 0.1, 0.5, 0.2]), 0.5)
    tensor([1, 3])
    >>> prune_indices(torch.tensor([0.3, 0.1, 0.5, 0.2]), 0.5, "largest")
    tensor([0, 2])

    Defined in :ref:`ch-lucky-neurons`.
    """
    norms = _norms(norms)
    R = _checks.fraction("R", R)
    _checks.choice("order", order, ORDERS)
    m = norms.shape[0]
    k = int(math.floor(R * m + 0.5))
    if order == "random":
        if generator is None:
            raise LrtError("generator: random pruning needs a torch.Generator or an int seed, got None")
        perm = torch.randperm(m, generator=_checks.generator("generator", generator))
    else:
        perm = torch.argsort(norms, descending=(order == "largest"), stable=True)
    return torch.sort(perm[:k]).values


def _check_network(model) -> OneLayerTransformer:
    if not isinstance(model, OneLayerTransformer):
        raise LrtTypeError(
            f"model: expected a OneLayerTransformer (pruning zeroes rows of its trained W_O), got {type(model).__name__}"
        )
    return model


def pruned(model: OneLayerTransformer, idx) -> OneLayerTransformer:
    """A copy of ``model`` with the rows ``idx`` of W_O set to zero (those neurons output 0).

    Arguments:
        model: a :class:`OneLayerTransformer`.
        idx: neuron indices, integers in [0, m) (a tensor, list or tuple; repeats allowed).

    >>> net = pruned(OneLayerTransformer(4, 6, generator=0), torch.tensor([0, 5]))
    >>> row_norms(net.W_O.detach())[[0, 5]].tolist()
    [0.0, 0.0]

    Defined in :ref:`ch-lucky-neurons`.
    """
    _check_network(model)
    m = model.W_O.shape[0]
    if isinstance(idx, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
        idx = torch.tensor(idx, dtype=torch.int64).reshape(-1)
    if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        kind = idx.dtype if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise LrtTypeError(f"idx: expected integer neuron indices in [0, {m}), got {kind}")
    if idx.dim() != 1:
        raise LrtError(f"idx: expected a 1-D tensor of neuron indices, got shape {tuple(idx.shape)}")
    if len(idx) and (idx.min() < 0 or idx.max() >= m):
        raise LrtError(f"idx: expected neuron indices in [0, {m}), got values in [{idx.min().item()}, {idx.max().item()}]")
    net = copy.deepcopy(model)
    with torch.no_grad():
        net.W_O[idx] = 0.0
    return net


def pruning_curve(model: OneLayerTransformer, data: PatternData, rates: Sequence[float], *, order: str, generator=None) -> dict:
    """Test hinge and 0-1 error after pruning a fraction R of the neurons, for each R in ``rates``.

    Arguments:
        model: a trained :class:`OneLayerTransformer`.
        data: evaluation set.
        rates: pruning rates in [0, 1].
        order: ``smallest``, ``largest`` or ``random`` (:func:`prune_indices`).
        generator: for ``random`` (one draw per rate, in order).

    Returns:
        dict ``R``, ``hinge``, ``error``: tensors of shape ``(len(rates),)``.

    >>> from lrt.p2 import P2Config, make_patterns, sample_pattern_data
    >>> cfg = P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=6)
    >>> data = sample_pattern_data(cfg, 4, make_patterns(8, 8, generator=0), generator=1)
    >>> curve = pruning_curve(OneLayerTransformer(8, 6, generator=0), data, [0.0, 1.0], order="largest")
    >>> curve["hinge"][-1].item()
    1.0

    Defined in :ref:`ch-lucky-neurons`.
    """
    _check_network(model)
    _checks.choice("order", order, ORDERS)
    gen = _checks.generator("generator", generator) if generator is not None else None
    norms = row_norms(model.W_O.detach())
    hinge, error = [], []
    for R in rates:
        h, e = evaluate(pruned(model, prune_indices(norms, R, order, generator=gen)), data)
        hinge.append(h)
        error.append(e)
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return {"R": t([float(r) for r in rates]), "hinge": t(hinge), "error": t(error)}
