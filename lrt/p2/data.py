"""The orthogonal-pattern data model: patterns, samples, labels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lrt.core import checks as _checks
from lrt.core.errors import LrtError, LrtTypeError
from lrt.p2.config import P2Config

#: how far U Uᵀ may be from the identity for ``patterns`` to count as orthonormal
ORTHONORMAL_TOL = 1e-8


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


def check_data(name: str, data) -> PatternData:
    """``data`` if it is a :class:`PatternData` with finite tokens, else an error naming ``name``."""
    if not isinstance(data, PatternData):
        raise LrtTypeError(f"{name}: expected a PatternData (lrt.p2.sample_pattern_data), got {type(data).__name__}")
    if not bool(torch.isfinite(data.X).all()):
        bad = int((~torch.isfinite(data.X)).any(dim=(1, 2)).sum())
        raise LrtError(f"{name}: expected finite tokens X, got NaN or inf in {bad} of {len(data)} samples")
    return data


def sample_pattern_data(config: P2Config, n: int, patterns: torch.Tensor, *, generator) -> PatternData:
    """Draw ``n`` samples of the pattern model of ``config`` on the given patterns.

    Each sample: a class c uniform in {0, …, C−1}; ``n_relevant`` tokens of class c's patterns,
    ``n_confusion`` tokens of one other class (uniform), the rest uniform over the label-irrelevant
    patterns (indices ≥ C·K); each pattern within its group uniform; token order shuffled; noise
    N(0, τ²/d·I) added to every token. The label is the majority vote (class c has the most tokens).

    Arguments:
        config: a :class:`P2Config`.
        n: number of samples.
        patterns: ``(M, d)`` orthonormal rows (:func:`make_patterns`); rows that are not
            orthonormal (|U Uᵀ − I| > 1e-8) are rejected.
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
        raise LrtTypeError(f"config: expected a P2Config, got {type(config).__name__}")
    n = _checks.positive_int("n", n)
    patterns = _checks.tensor("patterns", patterns, shape=(config.M, config.d))
    gap = (patterns @ patterns.T - torch.eye(config.M, dtype=torch.float64)).abs().max().item()
    if gap > ORTHONORMAL_TOL:
        raise LrtError(
            f"patterns: expected orthonormal rows (U Uᵀ = I, as make_patterns returns), got max |U Uᵀ − I| = {gap:.3g}"
        )
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
