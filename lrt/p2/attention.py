"""Where the attention of label-relevant queries goes: relevant, confusion and irrelevant keys."""

from __future__ import annotations

import torch
from torch import nn

from lrt.p2.data import PatternData, check_data
from lrt.p2.losses import check_model


def _attention(model: nn.Module, data: PatternData) -> torch.Tensor:
    data = check_data("data", data)
    check_model("model", model)
    with torch.no_grad():
        _, attn = model(data.X, return_attention=True)
    return attn


def relevant_mass(attn: torch.Tensor, data: PatternData) -> float:
    """Mean over the (sample, label-relevant query) pairs of the attention mass on label-relevant keys."""
    mask = data.relevant_mask.to(torch.float64)  # (N, L)
    mass = (attn * mask[:, None, :]).sum(dim=2)  # (N, L): mass of each query on relevant keys
    return ((mass * mask).sum() / mask.sum()).item()


def relevant_attention(model: nn.Module, data: PatternData) -> float:
    """Attention mass on the label-relevant keys, averaged over the label-relevant queries.

    For each sample and each query token l of the sample's own class, Σ_s attn[l, s] over the keys s
    of the own class; the mean over all such (sample, query) pairs. At W_Q = W_K = I and τ = 0 it is
    n e / (n e + L − n) with n = ``n_relevant`` (0.324 for the defaults).

    >>> from lrt.p2 import P2Config, make_patterns, sample_pattern_data, OneLayerTransformer
    >>> cfg = P2Config(tau=0.0)
    >>> data = sample_pattern_data(cfg, 10, make_patterns(20, 20, generator=0), generator=1)
    >>> round(relevant_attention(OneLayerTransformer(20, 8, generator=0), data), 4)
    0.3242

    Defined in :ref:`ch-p2-model`.
    """
    return relevant_mass(_attention(model, data), data)


def attention_by_kind(model: nn.Module, data: PatternData) -> dict[str, float]:
    """Where the label-relevant queries look: their attention mass on the ``relevant`` keys (own
    class), the ``confusion`` keys (the other classes' patterns) and the ``irrelevant`` keys,
    averaged over all (sample, relevant query) pairs; the three add up to 1.

    Arguments:
        model: a network with ``forward(X, return_attention=True)``.
        data: :class:`PatternData`.

    Returns:
        dict ``relevant``, ``confusion``, ``irrelevant`` -> float.

    >>> from lrt.p2 import P2Config, make_patterns, sample_pattern_data, OneLayerTransformer
    >>> cfg = P2Config(tau=0.0)
    >>> data = sample_pattern_data(cfg, 10, make_patterns(20, 20, generator=0), generator=1)
    >>> {k: round(v, 4) for k, v in attention_by_kind(OneLayerTransformer(20, 8, generator=0), data).items()}
    {'relevant': 0.3242, 'confusion': 0.0795, 'irrelevant': 0.5963}

    Defined in :ref:`ch-p2-model`.
    """
    attn = _attention(model, data)
    rel = data.relevant_mask
    discriminative = data.token_pattern < data.config.n_classes * data.config.patterns_per_class
    kinds = {"relevant": rel, "confusion": discriminative & ~rel, "irrelevant": ~discriminative}
    q = rel.to(torch.float64)
    return {
        kind: (((attn * keys.to(torch.float64)[:, None, :]).sum(dim=2) * q).sum() / q.sum()).item()
        for kind, keys in kinds.items()
    }
