"""A small standard transformer with every head's weights exposed: a ViT and a character GPT.

**Convention.** An attention layer with ``H`` heads holds four parameters ``W_Q, W_K, W_V, W_O`` of
shape ``(H, d_model, d_head)``. For tokens ``X`` of shape ``(T, d_model)`` (rows are tokens), head ``h``
computes

    A_h = softmax( X W_Q[h] W_K[h]ᵀ Xᵀ / √d_head )        (row-wise; causal mask for the GPT)
    out_h = A_h X W_V[h] W_O[h]ᵀ                           shape (T, d_model)

and the layer returns ``Σ_h out_h``. So the two d_model × d_model matrices of head ``h`` that P1
tracks are ``W_K[h] W_Q[h]ᵀ`` (the transpose of the bilinear form of the logits, which has the same
singular values) and ``W_V[h] W_O[h]ᵀ``; both have rank ≤ d_head, and their perturbations from
initialisation, Δ(W_K W_Qᵀ) = W_K(t) W_Q(t)ᵀ − W_K(0) W_Q(0)ᵀ, have rank ≤ min(d_model, 2 d_head).
This is exactly the layout of ``torch.nn.MultiheadAttention`` (without biases): ``W_Q[h]`` is the
transpose of rows ``h·d_head … (h+1)·d_head`` of the query part of ``in_proj_weight`` and ``W_O[h]`` is
columns ``h·d_head … (h+1)·d_head`` of ``out_proj.weight`` (:func:`from_torch_attention`).

The blocks are pre-LN: ``x + attn(LN(x))`` then ``x + MLP(LN(x))``, with a final LayerNorm. All
parameters are drawn from an explicit generator; ``init_scale`` multiplies the four attention weights
(ordinary scale 1: entries N(0, 1/d_model)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lrt.core.errors import LrtError, LrtTypeError
from lrt.core import checks as _checks

__all__ = [
    "SelfAttention",
    "Block",
    "ViT",
    "CharGPT",
    "attention_layers",
    "layer_dims",
    "head_weights",
    "attention_products",
    "from_torch_attention",
]


def _check_dims(d_model, n_heads, d_head):
    d_model = _checks.positive_int("d_model", d_model)
    n_heads = _checks.positive_int("n_heads", n_heads)
    if d_head is None:
        if d_model % n_heads:
            raise LrtError(f"n_heads: expected a divisor of d_model = {d_model}, got {n_heads} (or pass d_head)")
        d_head = d_model // n_heads
    return d_model, n_heads, _checks.positive_int("d_head", d_head)


class SelfAttention(nn.Module):
    """Multi-head self-attention with explicit per-head weights ``W_Q, W_K, W_V, W_O``, each
    ``(n_heads, d_model, d_head)`` (see the module docstring for the convention).

    Arguments:
        d_model: token dimension.
        n_heads: number of heads H.
        d_head: head dimension (default d_model // n_heads).
        causal: mask attention to later tokens (for the GPT).
        tie_qk: use one matrix for queries and keys (W_K is W_Q), so W_K W_Qᵀ is symmetric PSD.

    Input ``x`` ``(batch, T, d_model)``; output ``(batch, T, d_model)``.

    >>> attn = SelfAttention(8, 2)
    >>> tuple(attn.W_Q.shape), tuple(attn(torch.zeros(3, 5, 8)).shape)
    ((2, 8, 4), (3, 5, 8))

    Defined in :ref:`ch-beyond-diagonal`.
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int | None = None, *, causal: bool = False, tie_qk: bool = False):
        super().__init__()
        self.d_model, self.n_heads, self.d_head = _check_dims(d_model, n_heads, d_head)
        self.causal, self.tie_qk = bool(causal), bool(tie_qk)
        shape = (self.n_heads, self.d_model, self.d_head)
        self.W_Q = nn.Parameter(torch.zeros(shape))
        self.W_K = None if self.tie_qk else nn.Parameter(torch.zeros(shape))
        self.W_V = nn.Parameter(torch.zeros(shape))
        self.W_O = nn.Parameter(torch.zeros(shape))

    def weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_Q, W_K, W_V, W_O), each ``(n_heads, d_model, d_head)`` (W_K is W_Q when tied)."""
        return self.W_Q, (self.W_Q if self.tie_qk else self.W_K), self.W_V, self.W_O

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        W_Q, W_K, W_V, W_O = self.weights()
        q = torch.einsum("btd,hde->bhte", x, W_Q)
        k = torch.einsum("btd,hde->bhte", x, W_K)
        v = torch.einsum("btd,hde->bhte", x, W_V)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        if self.causal:
            T = x.shape[1]
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            logits = logits.masked_fill(mask, float("-inf"))
        return torch.einsum("bhte,hde->btd", torch.softmax(logits, dim=-1) @ v, W_O)

    def products(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_K W_Qᵀ, W_V W_Oᵀ) of every head, each ``(n_heads, d_model, d_model)``, detached."""
        W_Q, W_K, W_V, W_O = (w.detach() for w in self.weights())
        return W_K @ W_Q.transpose(1, 2), W_V @ W_O.transpose(1, 2)


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` with a GELU MLP of width
    ``mlp_ratio · d_model``. Input and output ``(batch, T, d_model)``.

    >>> tuple(Block(8, 2)(torch.zeros(1, 3, 8)).shape)
    (1, 3, 8)

    Defined in :ref:`ch-beyond-diagonal`.
    """

    def __init__(self, d_model: int, n_heads: int, *, mlp_ratio: int = 4, causal: bool = False, tie_qk: bool = False):
        super().__init__()
        mlp_ratio = _checks.positive_int("mlp_ratio", mlp_ratio)
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, causal=causal, tie_qk=tie_qk)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.utils.skip_init(nn.Linear, d_model, mlp_ratio * d_model),
            nn.GELU(),
            nn.utils.skip_init(nn.Linear, mlp_ratio * d_model, d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def _initialise(model: nn.Module, generator, init_scale: float, dtype: torch.dtype) -> None:
    """Draw every parameter from ``generator`` in registration order (nothing global is used)."""
    gen = _checks.generator("generator", generator)
    model.to(dtype)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SelfAttention):
                for w in (module.W_Q, module.W_K, module.W_V, module.W_O):
                    if w is not None:
                        w.copy_(torch.randn(w.shape, generator=gen, dtype=dtype) * (init_scale / math.sqrt(module.d_model)))
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen, dtype=dtype) / math.sqrt(module.in_features))
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen, dtype=dtype))
        for name, p in model.named_parameters(recurse=False):  # class token, position embeddings
            p.copy_(0.02 * torch.randn(p.shape, generator=gen, dtype=dtype))


def _common_checks(d_model, n_layers, n_heads, init_scale, dtype):
    d_model, n_heads, _ = _check_dims(d_model, n_heads, None)
    n_layers = _checks.positive_int("n_layers", n_layers)
    init_scale = _checks.positive_float("init_scale", init_scale)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise LrtTypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    return d_model, n_layers, n_heads, init_scale


class ViT(nn.Module):
    """A small vision transformer for square one-channel images: non-overlapping ``patch × patch``
    patches, a linear patch embedding, a class token and learned position embeddings, pre-LN blocks,
    and a linear classifier on the final class token.

    Arguments:
        image_size: side of the images (8 for the digits, 32 for CIFAR-10).
        channels: colour channels (1 for the digits, 3 for CIFAR-10); a patch is ``channels × patch × patch``.
        patch: side of a patch (must divide ``image_size``).
        n_classes: number of classes.
        d_model, n_layers, n_heads: the transformer's width, depth and heads per layer.
        init_scale: multiplier of the attention weights' ordinary initialisation.
        tie_qk: queries and keys share one matrix.
        generator: ``torch.Generator`` or int seed for the initialisation.
        dtype: parameter dtype (default float64).

    Input images ``(batch, image_size, image_size)`` (one channel) or ``(batch, channels, image_size,
    image_size)``; output logits ``(batch, n_classes)``.

    >>> vit = ViT(d_model=16, n_layers=2, n_heads=2, generator=0)
    >>> tuple(vit(torch.zeros(5, 8, 8)).shape), vit.n_tokens
    ((5, 10), 17)

    Defined in :ref:`ch-beyond-diagonal`.
    """

    def __init__(self, *, image_size: int = 8, channels: int = 1, patch: int = 2, n_classes: int = 10, d_model: int = 32, n_layers: int = 2,
                 n_heads: int = 4, init_scale: float = 1.0, tie_qk: bool = False, generator=0, dtype: torch.dtype = torch.float64):
        super().__init__()
        d_model, n_layers, n_heads, init_scale = _common_checks(d_model, n_layers, n_heads, init_scale, dtype)
        self.image_size = _checks.positive_int("image_size", image_size)
        self.patch = _checks.positive_int("patch", patch)
        self.channels = _checks.positive_int("channels", channels)
        if self.image_size % self.patch:
            raise LrtError(f"patch: expected a divisor of image_size = {self.image_size}, got {self.patch}")
        n_classes = _checks.positive_int("n_classes", n_classes, minimum=2)
        self.n_tokens = (self.image_size // self.patch) ** 2 + 1
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos = nn.Parameter(torch.zeros(1, self.n_tokens, d_model))
        self.embed = nn.utils.skip_init(nn.Linear, self.channels * self.patch**2, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, tie_qk=tie_qk) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.utils.skip_init(nn.Linear, d_model, n_classes)
        _initialise(self, generator, init_scale, dtype)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """Split images ``(B, S, S)`` into patches ``(B, (S/p)², p²)``, row-major over the patch grid;
        with C > 1 channels, images ``(B, C, S, S)`` into patches ``(B, (S/p)², C p²)`` (channel, then
        row, then column within a patch)."""
        S, C, p, n = self.image_size, self.channels, self.patch, self.image_size // self.patch
        if C == 1:
            if images.dim() != 3 or images.shape[1:] != (S, S):
                raise LrtError(f"images: expected shape (batch, {S}, {S}), got {tuple(images.shape)}")
            B = images.shape[0]
            return images.reshape(B, n, p, n, p).permute(0, 1, 3, 2, 4).reshape(B, n * n, p * p)
        if images.dim() != 4 or images.shape[1:] != (C, S, S):
            raise LrtError(f"images: expected shape (batch, {C}, {S}, {S}), got {tuple(images.shape)}")
        B = images.shape[0]
        return images.reshape(B, C, n, p, n, p).permute(0, 2, 4, 1, 3, 5).reshape(B, n * n, C * p * p)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.patches(images))
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x[:, 0]))


class CharGPT(nn.Module):
    """A tiny decoder-only (GPT-style) character model: token and learned position embeddings, causal
    pre-LN blocks, a final LayerNorm and a linear read-out to the vocabulary.

    Arguments:
        vocab_size: number of characters.
        context: maximum sequence length.
        d_model, n_layers, n_heads, init_scale, tie_qk, generator, dtype: as for :class:`ViT`.

    Input ids ``(batch, T)`` int64 with T ≤ context; output logits ``(batch, T, vocab_size)``.

    >>> gpt = CharGPT(vocab_size=11, context=6, d_model=8, n_layers=1, n_heads=2, generator=0)
    >>> tuple(gpt(torch.zeros(2, 6, dtype=torch.int64)).shape)
    (2, 6, 11)

    Defined in :ref:`ch-beyond-diagonal`.
    """

    def __init__(self, *, vocab_size: int, context: int = 64, d_model: int = 32, n_layers: int = 2, n_heads: int = 4,
                 init_scale: float = 1.0, tie_qk: bool = False, generator=0, dtype: torch.dtype = torch.float64):
        super().__init__()
        d_model, n_layers, n_heads, init_scale = _common_checks(d_model, n_layers, n_heads, init_scale, dtype)
        self.vocab_size = _checks.positive_int("vocab_size", vocab_size, minimum=2)
        self.context = _checks.positive_int("context", context)
        self.pos = nn.Parameter(torch.zeros(1, self.context, d_model))
        self.embed = nn.Embedding(self.vocab_size, d_model, _weight=torch.zeros(self.vocab_size, d_model))
        self.blocks = nn.ModuleList(Block(d_model, n_heads, causal=True, tie_qk=tie_qk) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.utils.skip_init(nn.Linear, d_model, self.vocab_size)
        _initialise(self, generator, init_scale, dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.shape[1] > self.context or ids.dtype != torch.int64:
            raise LrtError(f"ids: expected int64 of shape (batch, T ≤ {self.context}), got {ids.dtype} {tuple(ids.shape)}")
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The attention layers of ``model`` in depth order: lrt's :class:`SelfAttention` and torch's
    ``nn.MultiheadAttention`` (alone or inside ``nn.TransformerEncoderLayer``/``nn.TransformerDecoderLayer``).

    >>> len(attention_layers(ViT(d_model=8, n_layers=3, n_heads=2)))
    3
    >>> layer = nn.TransformerEncoderLayer(8, 2, batch_first=True)
    >>> len(attention_layers(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)))
    2

    Defined in :ref:`ch-beyond-diagonal`.
    """
    if not isinstance(model, nn.Module):
        raise LrtTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    layers = [m for m in model.modules() if isinstance(m, (SelfAttention, nn.MultiheadAttention))]
    if not layers:
        raise LrtError(f"model: expected a model with lrt.SelfAttention or torch.nn.MultiheadAttention layers, found none in {type(model).__name__}")
    return layers


def layer_dims(layer: nn.Module) -> tuple[int, int, int]:
    """``(d_model, n_heads, d_head)`` of an attention layer (lrt's or torch's).

    >>> layer_dims(nn.MultiheadAttention(12, 3))
    (12, 3, 4)

    Defined in :ref:`ch-beyond-diagonal`.
    """
    if isinstance(layer, SelfAttention):
        return layer.d_model, layer.n_heads, layer.d_head
    if isinstance(layer, nn.MultiheadAttention):
        return layer.embed_dim, layer.num_heads, layer.head_dim
    raise LrtTypeError(f"layer: expected an lrt.SelfAttention or a torch.nn.MultiheadAttention, got {type(layer).__name__}")


def head_weights(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-head weights ``(W_Q, W_K, W_V, W_O)`` of an attention layer, each ``(n_heads, d_model,
    d_head)`` in the convention of this module (detached views, in the parameters' dtype).

    For ``nn.MultiheadAttention`` with ``d = embed_dim`` and ``d_h = head_dim``: ``W_Q[h]`` is the
    transpose of rows ``h d_h … (h+1) d_h`` of the query block (rows ``0 … d``) of ``in_proj_weight``
    (or of ``q_proj_weight``), likewise ``W_K`` and ``W_V`` from the key and value blocks, and ``W_O[h]``
    is columns ``h d_h … (h+1) d_h`` of ``out_proj.weight``. Biases, if the module has them, shift the
    queries, keys and values but are not part of the tracked products. Keys and values must have
    the queries' dimension (``kdim = vdim = embed_dim``, self-attention).

    >>> mha = nn.MultiheadAttention(8, 2)
    >>> W_Q, W_K, W_V, W_O = head_weights(mha)
    >>> tuple(W_O.shape), bool((W_Q[1].T == mha.in_proj_weight[4:8]).all())
    ((2, 8, 4), True)

    Defined in :ref:`ch-beyond-diagonal`.
    """
    if isinstance(layer, SelfAttention):
        return tuple(w.detach() for w in layer.weights())
    d, H, dh = layer_dims(layer)
    if layer.in_proj_weight is not None:
        blocks = layer.in_proj_weight.detach().split(d)
    elif layer.kdim == d and layer.vdim == d:
        blocks = tuple(w.detach() for w in (layer.q_proj_weight, layer.k_proj_weight, layer.v_proj_weight))
    else:
        raise LrtError(f"layer: expected nn.MultiheadAttention with kdim = vdim = embed_dim = {d} (self-attention), "
                       f"got kdim = {layer.kdim}, vdim = {layer.vdim}")
    W_Q, W_K, W_V = (w.reshape(H, dh, d).transpose(1, 2) for w in blocks)
    W_O = layer.out_proj.weight.detach().reshape(d, H, dh).permute(1, 0, 2)
    return W_Q, W_K, W_V, W_O


def attention_products(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """W_K W_Qᵀ and W_V W_Oᵀ of every head of every layer, each ``(n_layers, n_heads, d_model, d_model)``,
    computed in float64 whatever the parameters' dtype (detached, on the parameters' device). Works
    for lrt's models and for models built from ``nn.MultiheadAttention`` (see :func:`head_weights`).

    >>> qk, vo = attention_products(ViT(d_model=8, n_layers=2, n_heads=2))
    >>> tuple(qk.shape), qk.dtype, int(torch.linalg.matrix_rank(qk[0, 0]))
    ((2, 2, 8, 8), torch.float64, 4)

    Defined in :ref:`ch-beyond-diagonal`.
    """
    layers = attention_layers(model)
    dims = {layer_dims(layer) for layer in layers}
    if len(dims) > 1:
        raise LrtError(f"model: expected attention layers of one shape (d_model, n_heads, d_head), got {sorted(dims)}")
    qk, vo = [], []
    for layer in layers:
        W_Q, W_K, W_V, W_O = (w.to(torch.float64) for w in head_weights(layer))
        qk.append(W_K @ W_Q.transpose(1, 2))
        vo.append(W_V @ W_O.transpose(1, 2))
    return torch.stack(qk), torch.stack(vo)


def from_torch_attention(mha: nn.MultiheadAttention) -> SelfAttention:
    """The :class:`SelfAttention` computing the same map as a bias-free ``nn.MultiheadAttention``
    (``batch_first=True``, self-attention ``mha(x, x, x)``): the per-head slices of its weights
    (:func:`head_weights`), in the convention of this module.

    >>> mha = nn.MultiheadAttention(8, 2, bias=False, batch_first=True, dtype=torch.float64)
    >>> tuple(from_torch_attention(mha).W_O.shape)
    (2, 8, 4)

    Defined in :ref:`ch-beyond-diagonal`.
    """
    if not isinstance(mha, nn.MultiheadAttention):
        raise LrtTypeError(f"mha: expected a torch.nn.MultiheadAttention, got {type(mha).__name__}")
    if mha.in_proj_bias is not None or mha.out_proj.bias is not None or mha.in_proj_weight is None:
        raise LrtError("mha: expected nn.MultiheadAttention(..., bias=False) with equal q/k/v dimensions")
    d, H, _ = layer_dims(mha)
    out = SelfAttention(d, H).to(mha.in_proj_weight.dtype)
    with torch.no_grad():
        for param, w in zip((out.W_Q, out.W_K, out.W_V, out.W_O), head_weights(mha)):
            param.copy_(w)
    return out
