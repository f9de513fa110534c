"""LoRA adapters on a frozen :class:`~lrt.p2.network.OneLayerTransformer`."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from lrt.core import checks as _checks
from lrt.core.errors import LrtError, LrtTypeError
from lrt.p2.network import WEIGHTS, OneLayerTransformer, transformer_forward


def _adapted(adapt) -> tuple[str, ...]:
    """The names in ``adapt`` (one name or a sequence of them), each checked, without repeats."""
    names = (adapt,) if isinstance(adapt, str) else adapt
    try:
        names = tuple(names)
    except TypeError:
        raise LrtTypeError(f"adapt: expected names among {', '.join(WEIGHTS)}, got {type(adapt).__name__}") from None
    if not names:
        raise LrtError(f"adapt: expected at least one of {', '.join(WEIGHTS)} (nothing to train), got {adapt!r}")
    for name in names:
        _checks.choice("adapt", name, WEIGHTS)
    return tuple(dict.fromkeys(names))


class LoRATransformer(nn.Module):
    """Rank-r LoRA adapters on a frozen :class:`OneLayerTransformer`: W = W⁽⁰⁾ + (α/r) B A for each
    adapted W (the parametrisation of Hu et al., 2021).

    ``B`` ``(out, r)`` starts at zero and ``A`` ``(r, in)`` with i.i.d. N(0, 1/in) entries, so the
    model begins exactly at W⁽⁰⁾. Only the adapters are trained.

    Arguments:
        base: the frozen network (its parameters are copied, not shared).
        rank: 1 ≤ r ≤ min(out, in) of every adapted matrix (a larger r adds no expressive power).
        alpha: the LoRA scale α (> 0); ΔW = (α/r) B A.
        adapt: the adapted matrices: one name or several (default all four).
        generator: torch.Generator or int seed for A.

    >>> lora = LoRATransformer(OneLayerTransformer(4, 6, generator=0), rank=1, generator=0)
    >>> sorted(name for name, _ in lora.named_parameters())
    ['A_K', 'A_O', 'A_Q', 'A_V', 'B_K', 'B_O', 'B_Q', 'B_V']
    >>> bool(torch.equal(lora.weights()["W_O"], lora.W_O0))
    True

    Defined in :ref:`ch-lora`.
    """

    def __init__(self, base: OneLayerTransformer, *, rank: int, alpha: float = 1.0, adapt: Sequence[str] = WEIGHTS, generator):
        super().__init__()
        if not isinstance(base, OneLayerTransformer):
            raise LrtTypeError(f"base: expected a OneLayerTransformer, got {type(base).__name__}")
        rank = _checks.positive_int("rank", rank)
        alpha = _checks.positive_float("alpha", alpha)
        adapt = _adapted(adapt)
        largest = min(min(getattr(base, name).shape) for name in adapt)
        if rank > largest:
            raise LrtError(f"rank: expected at most {largest} (the smaller side of the adapted matrices {', '.join(adapt)}), got {rank}")
        gen = _checks.generator("generator", generator)
        self.rank, self.alpha, self.adapt = rank, alpha, adapt
        self.scale = alpha / rank
        for name, W in base.weights().items():
            self.register_buffer(name + "0", W.detach().clone())
        self.register_buffer("a", base.a.clone())
        for name in adapt:
            out_dim, in_dim = getattr(self, name + "0").shape
            tag = name[-1]
            self.register_parameter("B_" + tag, nn.Parameter(torch.zeros(out_dim, rank, dtype=torch.float64)))
            A = torch.randn(rank, in_dim, generator=gen, dtype=torch.float64) / math.sqrt(in_dim)
            self.register_parameter("A_" + tag, nn.Parameter(A))

    @property
    def n_outputs(self) -> int:
        """1 (a scalar output) or C."""
        return 1 if self.a.dim() == 1 else self.a.shape[0]

    def weights(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in WEIGHTS:
            W = getattr(self, name + "0")
            if name in self.adapt:
                tag = name[-1]
                W = W + self.scale * (getattr(self, "B_" + tag) @ getattr(self, "A_" + tag))
            out[name] = W
        return out

    def forward(self, X: torch.Tensor, *, return_attention: bool = False):
        return transformer_forward(X, **self.weights(), a=self.a, return_attention=return_attention)
