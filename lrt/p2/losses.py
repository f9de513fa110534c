"""The hinge loss, the 0-1 error and the gradients of Part II's network."""

from __future__ import annotations

import torch
from torch import nn

from lrt.core.errors import LrtError, LrtTypeError
from lrt.p2.data import PatternData, check_data


def check_outputs(out, y) -> tuple[torch.Tensor, torch.Tensor]:
    """``out`` ``(N,)`` or ``(N, C)`` real and ``y`` ``(N,)`` integer classes in {0, 1} (one output) or
    {0, …, C−1}; else an error naming the argument."""
    if not isinstance(out, torch.Tensor) or out.dim() not in (1, 2) or not out.is_floating_point():
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise LrtError(f"out: expected a float tensor of shape (N,) or (N, C) (network outputs), got {shape}")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        kind = y.dtype if isinstance(y, torch.Tensor) else type(y).__name__
        raise LrtTypeError(f"y: expected an integer tensor of classes, got {kind}")
    if y.shape != out.shape[:1]:
        raise LrtError(f"y: expected shape ({out.shape[0]},), one class per output row, got {tuple(y.shape)}")
    C = 2 if out.dim() == 1 else out.shape[1]
    if len(y) and (y.min() < 0 or y.max() >= C):
        what = "a single output is binary: class 0 (y = +1) or 1 (y = −1)" if out.dim() == 1 else f"{C} outputs"
        raise LrtError(f"y: expected classes in {{0, …, {C - 1}}} ({what}), got values in [{y.min().item()}, {y.max().item()}]")
    return out, y


def _targets(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """±1 targets of the same shape as ``out``: binary y = +1 for class 0; one-vs-rest for C outputs."""
    if out.dim() == 1:
        return 1.0 - 2.0 * y.to(out.dtype)
    return 2.0 * torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype) - 1.0


def hinge_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean hinge loss max(0, 1 − y F): binary for ``out`` of shape ``(N,)`` (class 0 ↔ y = +1),
    one-vs-rest (summed over the C outputs) for ``(N, C)``.

    Arguments:
        out: network outputs ``(N,)`` or ``(N, C)``.
        y: classes ``(N,)``, integers in {0, 1} for one output, {0, …, C−1} for C.

    Returns:
        scalar tensor.

    >>> hinge_loss(torch.tensor([2.0, 0.5]), torch.tensor([0, 1])).item()
    0.75

    Defined in :ref:`ch-p2-model`.
    """
    out, y = check_outputs(out, y)
    margins = torch.relu(1.0 - _targets(out, y) * out)
    return margins.sum(dim=1).mean() if out.dim() == 2 else margins.mean()


def zero_one_error(out: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction misclassified: sign(F) for one output (F = 0 counts as an error), argmax for C; a
    NaN output counts as an error. ``y`` as in :func:`hinge_loss`.

    >>> zero_one_error(torch.tensor([2.0, 0.5, -1.0]), torch.tensor([0, 1, 1]))
    0.3333333333333333

    Defined in :ref:`ch-p2-model`.
    """
    out, y = check_outputs(out, y)
    if out.dim() == 1:
        wrong = ~((1.0 - 2.0 * y.to(out.dtype)) * out > 0)  # a NaN output (diverged training) is an error
    else:
        wrong = (out.argmax(dim=1) != y) | torch.isnan(out).any(dim=1)
    return wrong.to(torch.float64).mean().item()


def check_model(name: str, model, data: PatternData | None = None) -> nn.Module:
    """``model`` if it is a Part II network (``n_outputs``, ``weights()``) whose head fits ``data``'s
    classes, else an error naming ``name``."""
    if not isinstance(model, nn.Module) or not hasattr(model, "weights") or not hasattr(model, "n_outputs"):
        raise LrtTypeError(f"{name}: expected a OneLayerTransformer or LoRATransformer, got {type(model).__name__}")
    if data is not None:
        C, d = data.config.n_classes, data.X.shape[2]
        if model.n_outputs != (1 if C == 2 else C):
            raise LrtError(
                f"{name}: a network with {model.n_outputs} output(s) cannot fit data with {C} classes "
                f"(expected 1 output for 2 classes, or C outputs for C > 2)"
            )
        if model.weights()["W_Q"].shape[1] != d:
            raise LrtError(f"{name}: expected token dimension d = {d} of the data, got {model.weights()['W_Q'].shape[1]}")
    return model


def evaluate(model: nn.Module, data: PatternData) -> tuple[float, float]:
    """(hinge loss, 0-1 error) of ``model`` on ``data``.

    >>> from lrt.p2 import P2Config, make_patterns, sample_pattern_data, OneLayerTransformer
    >>> cfg = P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=6)
    >>> data = sample_pattern_data(cfg, 4, make_patterns(8, 8, generator=0), generator=1)
    >>> hinge, err = evaluate(OneLayerTransformer(8, 6, generator=0), data)
    >>> 0.5 < hinge < 1.5
    True

    Defined in :ref:`ch-p2-model`.
    """
    data = check_data("data", data)
    check_model("model", model, data)
    with torch.no_grad():
        out = model(data.X)
    return hinge_loss(out, data.y).item(), zero_one_error(out, data.y)


def gradients(model: nn.Module, data: PatternData) -> dict[str, torch.Tensor]:
    """Gradient of the mean hinge loss over ``data`` with respect to each trainable parameter, by name.

    >>> from lrt.p2 import P2Config, make_patterns, sample_pattern_data, OneLayerTransformer
    >>> cfg = P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=6)
    >>> data = sample_pattern_data(cfg, 4, make_patterns(8, 8, generator=0), generator=1)
    >>> {k: tuple(v.shape) for k, v in gradients(OneLayerTransformer(8, 6, generator=0), data).items()}
    {'W_Q': (8, 8), 'W_K': (8, 8), 'W_V': (8, 8), 'W_O': (6, 8)}

    Defined in :ref:`ch-low-rank-updates`.
    """
    data = check_data("data", data)
    check_model("model", model, data)
    named = trainable_parameters(model)
    with torch.enable_grad():
        loss = hinge_loss(model(data.X), data.y)
        grads = torch.autograd.grad(loss, [p for _, p in named])
    return {n: g.detach() for (n, _), g in zip(named, grads)}


def trainable_parameters(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The ``(name, parameter)`` pairs of ``model`` that require grad; an error if there are none."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise LrtError("model: expected trainable parameters (requires_grad), got none")
    return named
