"""The one-layer transformer of Part II: one attention head, then a two-layer ReLU perceptron."""

from __future__ import annotations

import math

import torch
from torch import nn

from lrt.core import checks as _checks
from lrt.core.errors import LrtError, LrtTypeError

#: the four trained matrices, in the order of the paper
WEIGHTS = ("W_Q", "W_K", "W_V", "W_O")


def check_tokens(X, d: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``X`` as a ``(N, L, d)`` tensor of ``dtype`` (a real tensor of another float dtype is converted),
    else an error naming ``X``."""
    if not isinstance(X, torch.Tensor):
        raise LrtTypeError(f"X: expected a tensor of shape (N, L, d = {d}), got {type(X).__name__}")
    if X.dim() != 3 or X.shape[2] != d:
        raise LrtError(f"X: expected shape (N, L, d = {d}) (samples, tokens, token dimension), got {tuple(X.shape)}")
    if X.is_complex() or X.dtype == torch.bool:
        raise LrtTypeError(f"X: expected real tokens, got dtype {X.dtype}")
    return X if X.dtype == dtype else X.to(dtype)


def transformer_forward(X: torch.Tensor, W_Q, W_K, W_V, W_O, a, *, return_attention: bool = False):
    """F(X) = (1/L) Σ_l aᵀ ReLU(W_O W_V X softmax_s((W_K x_s)ᵀ W_Q x_l)), batched.

    Arguments:
        X: ``(N, L, d)`` tokens as rows (converted to the weights' dtype).
        W_Q, W_K: ``(m_b, d)``; W_V: ``(m_a, d)``; W_O: ``(m, m_a)``.
        a: ``(m,)`` (one output) or ``(C, m)`` (C outputs).
        return_attention: also return the attention weights ``(N, L_query, L_key)``.

    Returns:
        ``(N,)`` for ``a`` of shape ``(m,)``, else ``(N, C)``; and the attention if asked.

    >>> X = torch.zeros(1, 3, 2)
    >>> transformer_forward(X, torch.eye(2), torch.eye(2), torch.eye(2), torch.ones(4, 2), torch.ones(4))
    tensor([0.])

    Defined in :ref:`ch-p2-model`.
    """
    X = check_tokens(X, W_Q.shape[1], W_Q.dtype)
    q = X @ W_Q.T
    k = X @ W_K.T
    attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # attn[n, l, s]: query l attends to key s
    hidden = torch.relu((attn @ (X @ W_V.T)) @ W_O.T)  # (N, L, m)
    out = (hidden @ (a if a.dim() == 1 else a.T)).mean(dim=1)
    return (out, attn) if return_attention else out


class OneLayerTransformer(nn.Module):
    """The one-layer transformer with trained ``W_Q, W_K, W_V, W_O`` and fixed buffer ``a``.

    Initialisation (as in the in-context-learning sibling paper): W_Q = W_K = W_V = I_d,
    W_O ~ N(0, ξ²/d), entries of ``a`` uniform in {±1/√m} (one row per output).

    Arguments:
        d: token dimension (m_a = m_b = d).
        m: MLP width.
        n_outputs: 1 (binary, F scalar) or C.
        xi: scale of W_O.
        generator: torch.Generator or int seed.

    >>> net = OneLayerTransformer(4, 6, generator=0)
    >>> [name for name, _ in net.named_parameters()], tuple(net.a.shape)
    (['W_Q', 'W_K', 'W_V', 'W_O'], (6,))
    >>> tuple(net(torch.zeros(2, 3, 4)).shape)
    (2,)

    Defined in :ref:`ch-p2-model`.
    """

    def __init__(self, d: int, m: int, *, n_outputs: int = 1, xi: float = 0.1, generator):
        super().__init__()
        d = _checks.positive_int("d", d)
        m = _checks.positive_int("m", m)
        n_outputs = _checks.positive_int("n_outputs", n_outputs)
        xi = _checks.positive_float("xi", xi)
        gen = _checks.generator("generator", generator)
        eye = torch.eye(d, dtype=torch.float64)
        self.W_Q = nn.Parameter(eye.clone())
        self.W_K = nn.Parameter(eye.clone())
        self.W_V = nn.Parameter(eye.clone())
        self.W_O = nn.Parameter(torch.randn(m, d, generator=gen, dtype=torch.float64) * (xi / math.sqrt(d)))
        shape = (m,) if n_outputs == 1 else (n_outputs, m)
        signs = 2.0 * torch.randint(0, 2, shape, generator=gen).to(torch.float64) - 1.0
        self.register_buffer("a", signs / math.sqrt(m))

    @property
    def n_outputs(self) -> int:
        """1 (a scalar output) or C."""
        return 1 if self.a.dim() == 1 else self.a.shape[0]

    def weights(self) -> dict[str, torch.Tensor]:
        """The four (effective) weight matrices by name."""
        return {name: getattr(self, name) for name in WEIGHTS}

    def forward(self, X: torch.Tensor, *, return_attention: bool = False):
        return transformer_forward(X, **self.weights(), a=self.a, return_attention=return_attention)
