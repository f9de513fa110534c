"""Part II (chapters 7–10): the one-layer transformer of Li et al. (SAM 2024) on orthogonal-pattern
data — the data model, the network, SGD training, update spectra, lucky neurons, pruning and LoRA.
Imports only :mod:`lrt.core`.

Data model (spec §1): M orthogonal patterns μ_1 … μ_M (the rows of ``PatternData.patterns``);
each class c owns ``patterns_per_class`` label-relevant patterns; a sample of class c has
round(α_* L) tokens of its own patterns, round(α_# L) *confusion* tokens of one other class and
the rest drawn from the label-irrelevant patterns, each token plus Gaussian noise N(0, τ²/d I).
The label is the majority vote over the class patterns.

Network (spec §2): F(X) = (1/L) Σ_l aᵀ ReLU(W_O W_V X softmax_s((W_K x_s)ᵀ W_Q x_l)) with W_Q,
W_K, W_V, W_O trained and ``a`` fixed; C outputs (one row of ``a`` per class) in the C-class
variant. Training (spec §3): hinge loss (one-vs-rest for C classes), minibatch SGD, torch
autograd in float64, every random draw from an explicit generator.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from tqdm import tqdm

from lrt.core.errors import LrtError, LrtTypeError
from lrt.core import checks as _checks

__all__ = [
    "P2Config",
    "PatternData",
    "make_patterns",
    "sample_pattern_data",
    "transformer_forward",
    "OneLayerTransformer",
    "LoRATransformer",
    "hinge_loss",
    "zero_one_error",
    "evaluate",
    "relevant_attention",
    "attention_by_kind",
    "gradients",
    "TrainLog",
    "train",
    "P2Run",
    "setup_p2",
    "run_p2",
    "run_summary",
    "update_spectrum",
    "pattern_projections",
    "off_span_fraction",
    "row_norms",
    "lucky_fraction",
    "prune_indices",
    "pruned",
    "pruning_curve",
]

WEIGHTS = ("W_Q", "W_K", "W_V", "W_O")


def _count(alpha: float, L: int) -> int:
    return int(math.floor(alpha * L + 0.5))


@dataclass(frozen=True)
class P2Config:
    """Every setting of the book's Part II experiments; the defaults are spec §1–3.

    Data: ``d`` (token dimension), ``M`` (number of orthogonal patterns, ≤ d), ``L`` (tokens per
    sample), ``alpha_relevant`` α_* and ``alpha_confusion`` α_# (fractions of the L tokens, rounded),
    ``tau`` (noise scale), ``n_classes`` C, ``patterns_per_class`` K, ``n_train``, ``n_test``.
    Network: ``m`` (MLP width), ``xi`` (W_O ~ N(0, ξ²/d)); m_a = m_b = d and W_Q = W_K = W_V = I.
    Training: ``batch`` B, ``lr`` η, ``steps`` T, ``log_every``. ``multi_output``: a C-output head
    (one-vs-rest hinge) even for C = 2; the binary task otherwise has one output and y = ±1.

    >>> cfg = P2Config()
    >>> cfg.n_relevant, cfg.n_confusion, cfg.n_irrelevant
    (3, 2, 15)

    Defined in :ref:`ch-p2-model`.
    """

    d: int = 20
    M: int = 20
    L: int = 20
    alpha_relevant: float = 0.15
    alpha_confusion: float = 0.10
    tau: float = 0.2
    n_classes: int = 2
    patterns_per_class: int = 1
    n_train: int = 2000
    n_test: int = 1000
    m: int = 200
    xi: float = 0.1
    batch: int = 64
    lr: float = 1.0
    steps: int = 500
    log_every: int = 50
    multi_output: bool = False

    def __post_init__(self):
        for name in ("d", "M", "L", "n_train", "n_test", "m", "batch", "steps", "log_every", "patterns_per_class"):
            _checks.positive_int(name, getattr(self, name))
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise LrtError(f"n_classes: expected an int >= 2 (C classes), got {self.n_classes!r}")
        _checks.fraction("alpha_relevant", self.alpha_relevant)
        _checks.fraction("alpha_confusion", self.alpha_confusion)
        _checks.positive_float("tau", self.tau, allow_zero=True)
        _checks.positive_float("xi", self.xi)
        _checks.positive_float("lr", self.lr)
        if self.M > self.d:
            raise LrtError(f"M: expected at most d = {self.d} orthogonal patterns, got {self.M}")
        n_class_patterns = self.n_classes * self.patterns_per_class
        rel, conf = self.n_relevant, self.n_confusion
        if rel < 1 or rel <= conf or rel + conf > self.L:
            raise LrtError(
                f"L: expected enough tokens for round(alpha_relevant·L) > round(alpha_confusion·L) >= 0 "
                f"with both fitting in L (alpha_relevant = {self.alpha_relevant}, alpha_confusion = "
                f"{self.alpha_confusion}); got L = {self.L}: {rel} relevant and {conf} confusion tokens"
            )
        if self.n_irrelevant > 0 and self.M <= n_class_patterns:
            raise LrtError(
                f"M: expected more than C·K = {n_class_patterns} patterns (label-irrelevant tokens need at "
                f"least one irrelevant pattern), got {self.M}"
            )

    @property
    def n_relevant(self) -> int:
        """Label-relevant tokens per sample, round(α_* L)."""
        return _count(self.alpha_relevant, self.L)

    @property
    def n_confusion(self) -> int:
        """Confusion tokens per sample, round(α_# L)."""
        return _count(self.alpha_confusion, self.L)

    @property
    def n_irrelevant(self) -> int:
        """Label-irrelevant tokens per sample."""
        return self.L - self.n_relevant - self.n_confusion

    @property
    def n_outputs(self) -> int:
        """1 for the binary task (a scalar F with y = ±1), C otherwise."""
        return 1 if self.n_classes == 2 and not self.multi_output else self.n_classes

    def class_patterns(self, c: int) -> list[int]:
        """Indices of the label-relevant patterns of class c (0-based)."""
        K = self.patterns_per_class
        return list(range(c * K, (c + 1) * K))


def make_patterns(d: int, M: int, *, generator) -> torch.Tensor:
    """M orthonormal patterns in R^d: the columns of a random orthogonal matrix, as rows.

    Arguments:
        d, M: dimension and number of patterns (M ≤ d).
        generator: torch.Generator or int seed.

    Returns:
        ``(M, d)`` float64 with orthonormal rows.

    >>> U = make_patterns(4, 3, generator=0)
    >>> bool(torch.allclose(U @ U.T, torch.eye(3)))
    True

    Defined in :ref:`ch-p2-model`.
    """
    d = _checks.positive_int("d", d)
    M = _checks.positive_int("M", M)
    if M > d:
        raise LrtError(f"M: expected at most d = {d} orthogonal patterns, got {M}")
    gen = _checks.generator("generator", generator)
    G = torch.randn(d, d, generator=gen, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    Q = Q * torch.sign(torch.diagonal(R))  # Haar-distributed orthogonal matrix
    return Q[:, :M].T.contiguous()


@dataclass(frozen=True)
class PatternData:
    """A data set of the pattern model.

    ``X`` ``(N, L, d)`` tokens as rows; ``y`` ``(N,)`` int64 class in {0, …, C−1} (binary: class 0
    is y = +1, the class of μ_1); ``token_pattern`` ``(N, L)`` int64 pattern index of each token;
    ``patterns`` ``(M, d)``; ``config``.
    """

    X: torch.Tensor
    y: torch.Tensor
    token_pattern: torch.Tensor
    patterns: torch.Tensor
    config: P2Config

    @property
    def signs(self) -> torch.Tensor:
        """Binary labels y = +1 (class 0) or −1 (class 1), shape ``(N,)`` float64."""
        return 1.0 - 2.0 * self.y.to(torch.float64)

    @property
    def relevant_mask(self) -> torch.Tensor:
        """``(N, L)`` bool: the token is one of its sample's own-class (label-relevant) patterns."""
        K = self.config.patterns_per_class
        return (self.token_pattern // K == self.y[:, None]) & (self.token_pattern < self.config.n_classes * K)

    def __len__(self) -> int:
        return self.X.shape[0]


def sample_pattern_data(config: P2Config, n: int, patterns: torch.Tensor, *, generator) -> PatternData:
    """Draw ``n`` samples of the pattern model of ``config`` on the given patterns.

    Each sample: a class c uniform in {0, …, C−1}; ``n_relevant`` tokens of class c's patterns,
    ``n_confusion`` tokens of one other class (uniform), the rest uniform over the label-irrelevant
    patterns (indices ≥ C·K); each pattern within its group uniform; token order shuffled; noise
    N(0, τ²/d·I) added to every token. The label is the majority vote (class c has the most tokens).

    Arguments:
        config: a :class:`P2Config`.
        n: number of samples.
        patterns: ``(M, d)`` orthonormal rows (:func:`make_patterns`).
        generator: torch.Generator or int seed.

    Returns:
        :class:`PatternData` with ``X`` of shape ``(n, L, d)``.

    >>> cfg = P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2)
    >>> data = sample_pattern_data(cfg, 5, make_patterns(8, 8, generator=0), generator=1)
    >>> tuple(data.X.shape), data.relevant_mask.sum(dim=1).tolist()
    ((5, 10, 8), [3, 3, 3, 3, 3])

    Defined in :ref:`ch-p2-model`.
    """
    if not isinstance(config, P2Config):
        raise LrtError(f"config: expected a P2Config, got {type(config).__name__}")
    n = _checks.positive_int("n", n)
    patterns = _checks.tensor("patterns", patterns, shape=(config.M, config.d))
    gen = _checks.generator("generator", generator)
    C, K, L = config.n_classes, config.patterns_per_class, config.L
    rel, conf, irr = config.n_relevant, config.n_confusion, config.n_irrelevant
    y = torch.randint(0, C, (n,), generator=gen)
    other = (y + torch.randint(1, C, (n,), generator=gen)) % C  # a uniformly chosen other class
    own = y[:, None] * K + torch.randint(0, K, (n, rel), generator=gen)
    confusion = other[:, None] * K + torch.randint(0, K, (n, conf), generator=gen)
    irrelevant = C * K + torch.randint(0, max(config.M - C * K, 1), (n, irr), generator=gen)
    tokens = torch.cat([own, confusion, irrelevant], dim=1)
    order = torch.argsort(torch.rand(n, L, generator=gen, dtype=torch.float64), dim=1)
    tokens = torch.gather(tokens, 1, order)
    noise = torch.randn(n, L, config.d, generator=gen, dtype=torch.float64) * (config.tau / math.sqrt(config.d))
    X = patterns[tokens] + noise
    return PatternData(X=X, y=y, token_pattern=tokens, patterns=patterns, config=config)


# --- the network ---------------------------------------------------------------------------------


def transformer_forward(X: torch.Tensor, W_Q, W_K, W_V, W_O, a, *, return_attention: bool = False):
    """F(X) = (1/L) Σ_l aᵀ ReLU(W_O W_V X softmax_s((W_K x_s)ᵀ W_Q x_l)), batched.

    Arguments:
        X: ``(N, L, d)`` tokens as rows.
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
    q = X @ W_Q.T
    k = X @ W_K.T
    attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # attn[n, l, s]: query l attends to key s
    hidden = torch.relu((attn @ (X @ W_V.T)) @ W_O.T)  # (N, L, m)
    out = (hidden @ (a if a.dim() == 1 else a.T)).mean(dim=1)
    return (out, attn) if return_attention else out


class OneLayerTransformer(nn.Module):
    """The one-layer transformer of spec §2 with trained ``W_Q, W_K, W_V, W_O`` and fixed buffer ``a``.

    Initialisation (spec §2, [ICML24]-style): W_Q = W_K = W_V = I_d, W_O ~ N(0, ξ²/d), entries of
    ``a`` uniform in {±1/√m} (one row per output).

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

    def weights(self) -> dict[str, torch.Tensor]:
        """The four (effective) weight matrices by name."""
        return {name: getattr(self, name) for name in WEIGHTS}

    def forward(self, X: torch.Tensor, *, return_attention: bool = False):
        return transformer_forward(X, **self.weights(), a=self.a, return_attention=return_attention)


class LoRATransformer(nn.Module):
    """Rank-r LoRA adapters on a frozen :class:`OneLayerTransformer`: W = W⁽⁰⁾ + (α/r) B A for each
    adapted W (the parametrisation of Hu et al., 2021).

    ``B`` ``(out, r)`` starts at zero and ``A`` ``(r, in)`` with i.i.d. N(0, 1/in) entries, so the
    model begins exactly at W⁽⁰⁾. Only the adapters are trained.

    Arguments:
        base: the frozen network (its parameters are copied, not shared).
        rank: r ≥ 1.
        alpha: the LoRA scale α (> 0); ΔW = (α/r) B A.
        adapt: names of the adapted matrices (default all four).
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
        adapt = tuple(adapt)
        for name in adapt:
            _checks.choice("adapt", name, WEIGHTS)
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


# --- losses and measurements ---------------------------------------------------------------------


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
        y: classes ``(N,)`` int64.

    Returns:
        scalar tensor.

    >>> hinge_loss(torch.tensor([2.0, 0.5]), torch.tensor([0, 1])).item()
    0.75

    Defined in :ref:`ch-p2-model`.
    """
    margins = torch.relu(1.0 - _targets(out, y) * out)
    return margins.sum(dim=1).mean() if out.dim() == 2 else margins.mean()


def zero_one_error(out: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction misclassified: sign(F) for one output (F = 0 counts as an error), argmax for C; a
    NaN output counts as an error.

    >>> zero_one_error(torch.tensor([2.0, 0.5, -1.0]), torch.tensor([0, 1, 1]))
    0.3333333333333333

    Defined in :ref:`ch-p2-model`.
    """
    if out.dim() == 1:
        wrong = ~((1.0 - 2.0 * y.to(out.dtype)) * out > 0)  # a NaN output (diverged training) is an error
    else:
        wrong = (out.argmax(dim=1) != y) | torch.isnan(out).any(dim=1)
    return wrong.to(torch.float64).mean().item()


def evaluate(model: nn.Module, data: PatternData) -> tuple[float, float]:
    """(hinge loss, 0-1 error) of ``model`` on ``data``.

    >>> cfg = P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=6)
    >>> data = sample_pattern_data(cfg, 4, make_patterns(8, 8, generator=0), generator=1)
    >>> hinge, err = evaluate(OneLayerTransformer(8, 6, generator=0), data)
    >>> 0.5 < hinge < 1.5
    True

    Defined in :ref:`ch-p2-model`.
    """
    with torch.no_grad():
        out = model(data.X)
    return hinge_loss(out, data.y).item(), zero_one_error(out, data.y)


def relevant_attention(model: nn.Module, data: PatternData) -> float:
    """Attention mass on the label-relevant keys, averaged over the label-relevant queries.

    For each sample and each query token l of the sample's own class, Σ_s attn[l, s] over the keys s
    of the own class; the mean over all such (sample, query) pairs. At W_Q = W_K = I and τ = 0 it is
    n e / (n e + L − n) with n = ``n_relevant`` (0.324 for the defaults).

    >>> cfg = P2Config(tau=0.0)
    >>> data = sample_pattern_data(cfg, 10, make_patterns(20, 20, generator=0), generator=1)
    >>> round(relevant_attention(OneLayerTransformer(20, 8, generator=0), data), 4)
    0.3242

    Defined in :ref:`ch-p2-model`.
    """
    with torch.no_grad():
        _, attn = model(data.X, return_attention=True)
    return _relevant_mass(attn, data)


def attention_by_kind(model: nn.Module, data: PatternData) -> dict[str, float]:
    """Where the label-relevant queries look: their attention mass on the ``relevant`` keys (own
    class), the ``confusion`` keys (the other classes' patterns) and the ``irrelevant`` keys,
    averaged over all (sample, relevant query) pairs; the three add up to 1.

    Arguments:
        model: a network with ``forward(X, return_attention=True)``.
        data: :class:`PatternData`.

    Returns:
        dict ``relevant``, ``confusion``, ``irrelevant`` -> float.

    >>> cfg = P2Config(tau=0.0)
    >>> data = sample_pattern_data(cfg, 10, make_patterns(20, 20, generator=0), generator=1)
    >>> {k: round(v, 4) for k, v in attention_by_kind(OneLayerTransformer(20, 8, generator=0), data).items()}
    {'relevant': 0.3242, 'confusion': 0.0795, 'irrelevant': 0.5963}

    Defined in :ref:`ch-p2-model`.
    """
    with torch.no_grad():
        _, attn = model(data.X, return_attention=True)
    rel = data.relevant_mask
    discriminative = data.token_pattern < data.config.n_classes * data.config.patterns_per_class
    kinds = {"relevant": rel, "confusion": discriminative & ~rel, "irrelevant": ~discriminative}
    q = rel.to(torch.float64)
    return {
        kind: (((attn * keys.to(torch.float64)[:, None, :]).sum(dim=2) * q).sum() / q.sum()).item()
        for kind, keys in kinds.items()
    }


def _relevant_mass(attn: torch.Tensor, data: PatternData) -> float:
    mask = data.relevant_mask.to(torch.float64)  # (N, L)
    mass = (attn * mask[:, None, :]).sum(dim=2)  # (N, L): mass of each query on relevant keys
    return ((mass * mask).sum() / mask.sum()).item()


TRAIN_LOG_SAMPLES = 500


def gradients(model: nn.Module, data: PatternData) -> dict[str, torch.Tensor]:
    """Gradient of the mean hinge loss over ``data`` with respect to each trainable parameter, by name.

    >>> cfg = P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=6)
    >>> data = sample_pattern_data(cfg, 4, make_patterns(8, 8, generator=0), generator=1)
    >>> {k: tuple(v.shape) for k, v in gradients(OneLayerTransformer(8, 6, generator=0), data).items()}
    {'W_Q': (8, 8), 'W_K': (8, 8), 'W_V': (8, 8), 'W_O': (6, 8)}

    Defined in :ref:`ch-low-rank-updates`.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        loss = hinge_loss(model(data.X), data.y)
        grads = torch.autograd.grad(loss, [p for _, p in named])
    return {n: g.detach() for (n, _), g in zip(named, grads)}


@dataclass(frozen=True)
class TrainLog:
    """Logged every ``log_every`` steps (and at 0 and T): ``steps`` ``(k,)`` int64, and ``(k,)``
    float64 series ``train_hinge``, ``train_error`` (on the first ``TRAIN_LOG_SAMPLES`` training
    samples, to keep logging cheap), ``test_hinge``, ``test_error`` and ``attention`` (relevant
    attention mass, :func:`relevant_attention`) on the whole test set."""

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
    every parameter with ``requires_grad`` by −η·gradient (``optimizer="sgd"``, spec §3), or by
    a step of ``torch.optim.Adam`` with learning rate η and its default β's (``"adam"``, the usual
    optimiser of LoRA adapters).

    Arguments:
        model: a :class:`OneLayerTransformer` or :class:`LoRATransformer` (float64).
        train_data, test_data: :class:`PatternData`.
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
    steps = _checks.positive_int("steps", steps)
    batch = _checks.positive_int("batch", batch)
    lr = _checks.positive_float("lr", lr)
    log_every = _checks.positive_int("log_every", log_every)
    gen = _checks.generator("generator", generator)
    _checks.choice("optimizer", optimizer, ("sgd", "adam"))
    params = [p for p in model.parameters() if p.requires_grad]
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
            _relevant_mass(attn, test_data),
        ))

    log(0)
    n = len(train_data)
    for t in tqdm(range(1, steps + 1), disable=not progress, desc="SGD", leave=False):
        idx = torch.randint(0, n, (batch,), generator=gen)
        loss = hinge_loss(model(train_data.X[idx]), train_data.y[idx])
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
    """k child seeds derived from ``seed`` (patterns, train, test, init, batches, …)."""
    gen = _checks.generator("seed", seed)
    return torch.randint(0, 2**62, (k,), generator=gen).tolist()


def setup_p2(config: P2Config = P2Config(), seed: int = 0) -> tuple[OneLayerTransformer, PatternData, PatternData, int]:
    """The untrained network, the training and test sets of ``config`` from ``seed``, and the seed of
    the minibatches: everything :func:`run_p2` trains, without training it.

    From ``seed`` five child seeds are drawn: patterns, training set, test set, initialisation,
    minibatches. The C-class variant (``n_classes > 2`` or ``multi_output``) has a C-output head.

    >>> net, train_data, test_data, batch_seed = setup_p2(P2Config(n_train=8, n_test=4), seed=0)
    >>> tuple(train_data.X.shape), tuple(net.W_O.shape)
    ((8, 20, 20), (200, 20))

    Defined in :ref:`ch-p2-model`.
    """
    if not isinstance(config, P2Config):
        raise LrtTypeError(f"config: expected a P2Config, got {type(config).__name__}")
    s_pat, s_train, s_test, s_init, s_batch = seeds_for(seed, 5)
    patterns = make_patterns(config.d, config.M, generator=s_pat)
    train_data = sample_pattern_data(config, config.n_train, patterns, generator=s_train)
    test_data = sample_pattern_data(config, config.n_test, patterns, generator=s_test)
    model = OneLayerTransformer(config.d, config.m, n_outputs=config.n_outputs, xi=config.xi, generator=s_init)
    return model, train_data, test_data, s_batch


def run_p2(config: P2Config = P2Config(), seed: int = 0, *, steps: int | None = None, progress: bool = False) -> P2Run:
    """Build the data and the network of ``config`` from ``seed`` (:func:`setup_p2`) and train them
    for ``steps`` (default ``config.steps``) steps of SGD (spec E1).

    A shorter run is a prefix of a longer one: the minibatches do not depend on ``steps``.

    >>> r = run_p2(P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=16,
    ...                     n_train=64, n_test=32, batch=16, steps=20, log_every=10), seed=0)
    >>> tuple(r.delta("W_V").shape), r.log.steps.tolist()
    ((8, 8), [0, 10, 20])

    Defined in :ref:`ch-p2-model`.
    """
    model, train_data, test_data, s_batch = setup_p2(config, seed)
    init = {k: v.detach().clone() for k, v in model.weights().items()}
    log = train(
        model, train_data, test_data, steps=config.steps if steps is None else steps, batch=config.batch,
        lr=config.lr, log_every=config.log_every, generator=s_batch, progress=progress,
    )
    return P2Run(config, seed, model, init, train_data, test_data, log)


def run_summary(run: P2Run) -> dict[str, torch.Tensor]:
    """What the sweeps keep of a run: the singular values ``sigma_W_*`` ``(min shape,)`` of the four
    updates, ``offspan_W_*`` (:func:`off_span_fraction` w.r.t. the C·K label-relevant patterns; for
    W_O w.r.t. their images W_V μ), and the log series (``steps``, ``test_hinge``, …).

    >>> r = run_p2(P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=16,
    ...                     n_train=64, n_test=32, batch=16, steps=10, log_every=10), seed=0)
    >>> sorted(run_summary(r))[:3]
    ['attention', 'offspan_W_K', 'offspan_W_O']

    Defined in :ref:`ch-low-rank-updates`.
    """
    cfg = run.config
    relevant = run.train_data.patterns[: cfg.n_classes * cfg.patterns_per_class]
    out: dict[str, torch.Tensor] = {}
    for name in WEIGHTS:
        delta = run.delta(name)
        basis = relevant @ run.model.W_V.detach().T if name == "W_O" else relevant
        out["sigma_" + name] = torch.linalg.svdvals(delta)
        out["offspan_" + name] = torch.tensor(off_span_fraction(delta, basis), dtype=torch.float64)
    out.update(run.log.as_dict())
    return out


def update_spectrum(delta: torch.Tensor, k: int = 2, *, cut: float = 0.05) -> dict:
    """Singular values of an update ΔW and how concentrated they are.

    Arguments:
        delta: ``(p, q)`` matrix.
        k: the top-k energy share e_k = (σ_1² + … + σ_k²) / Σ σ².
        cut: numerical rank = #{σ_j > cut · σ_1}.

    Returns:
        dict with ``sigma`` ``(min(p, q),)`` descending, ``energy`` e_k, ``tail`` σ_{k+1}/σ_1,
        ``rank`` (numerical rank at ``cut``).

    >>> s = update_spectrum(torch.diag(torch.tensor([3.0, 1.0, 0.0])))
    >>> round(s["energy"], 3), s["tail"], s["rank"]
    (1.0, 0.0, 2)

    Defined in :ref:`ch-low-rank-updates`.
    """
    delta = _checks.tensor("delta", delta, shape=(None, None))
    k = _checks.positive_int("k", k)
    cut = _checks.fraction("cut", cut)
    sigma = torch.linalg.svdvals(delta)
    energy = sigma**2
    total = energy.sum().item()
    share = energy[:k].sum().item() / total if total > 0 else 1.0
    tail = (sigma[k] / sigma[0]).item() if len(sigma) > k and sigma[0] > 0 else 0.0
    rank = int((sigma > cut * sigma[0]).sum().item()) if sigma[0] > 0 else 0
    return {"sigma": sigma, "energy": share, "tail": tail, "rank": rank}


def pattern_projections(delta: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """‖ΔW μ_j‖ for every pattern μ_j (rows of ``patterns``), shape ``(M,)``.

    >>> pattern_projections(torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.eye(2))
    tensor([2., 0.])

    Defined in :ref:`ch-low-rank-updates`.
    """
    delta = _checks.tensor("delta", delta, shape=(None, None))
    patterns = _checks.tensor("patterns", patterns, shape=(None, delta.shape[1]))
    return torch.linalg.vector_norm(patterns @ delta.T, dim=1)


def off_span_fraction(delta: torch.Tensor, basis: torch.Tensor) -> float:
    """‖ΔW (I − P)‖_F / ‖ΔW‖_F, P the orthogonal projection onto the span of the rows of ``basis``:
    the part of the update whose *input side* lies outside span{basis}.

    >>> off_span_fraction(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    0.7071067811865475

    Defined in :ref:`ch-low-rank-updates`.
    """
    delta = _checks.tensor("delta", delta, shape=(None, None))
    basis = _checks.tensor("basis", basis, shape=(None, delta.shape[1]))
    Q, _ = torch.linalg.qr(basis.T)
    rest = delta - (delta @ Q) @ Q.T
    total = torch.linalg.matrix_norm(delta).item()
    return torch.linalg.matrix_norm(rest).item() / total if total > 0 else 0.0


def row_norms(W_O: torch.Tensor) -> torch.Tensor:
    """‖W_O[i]‖ for each neuron i, shape ``(m,)``.

    >>> row_norms(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    tensor([5., 1.])

    Defined in :ref:`ch-lucky-neurons`.
    """
    W_O = _checks.tensor("W_O", W_O, shape=(None, None))
    return torch.linalg.vector_norm(W_O, dim=1)


def lucky_fraction(norms: torch.Tensor, threshold: float = 0.5) -> float:
    """Fraction f of neurons with ‖W_O[i]‖ > threshold · max_i ‖W_O[i]‖ (the "lucky" ones).

    >>> lucky_fraction(torch.tensor([1.0, 0.9, 0.1, 0.2]))
    0.5

    Defined in :ref:`ch-lucky-neurons`.
    """
    norms = _checks.tensor("norms", norms, shape=(None,))
    threshold = _checks.fraction("threshold", threshold)
    return (norms > threshold * norms.max()).to(torch.float64).mean().item()


ORDERS = ("smallest", "largest", "random")


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
    norms = _checks.tensor("norms", norms, shape=(None,))
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


def pruned(model: OneLayerTransformer, idx: torch.Tensor) -> OneLayerTransformer:
    """A copy of ``model`` with the rows ``idx`` of W_O set to zero (those neurons output 0).

    >>> net = pruned(OneLayerTransformer(4, 6, generator=0), torch.tensor([0, 5]))
    >>> row_norms(net.W_O.detach())[[0, 5]].tolist()
    [0.0, 0.0]

    Defined in :ref:`ch-lucky-neurons`.
    """
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

    >>> cfg = P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=6)
    >>> data = sample_pattern_data(cfg, 4, make_patterns(8, 8, generator=0), generator=1)
    >>> curve = pruning_curve(OneLayerTransformer(8, 6, generator=0), data, [0.0, 1.0], order="largest")
    >>> curve["hinge"][-1].item()
    1.0

    Defined in :ref:`ch-lucky-neurons`.
    """
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
