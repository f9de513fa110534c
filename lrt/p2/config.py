"""The settings of Part II's experiments: :class:`P2Config`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lrt.core import checks as _checks
from lrt.core.errors import LrtError, LrtTypeError


def _count(alpha: float, L: int) -> int:
    return int(math.floor(alpha * L + 0.5))


@dataclass(frozen=True)
class P2Config:
    """Every setting of the book's Part II experiments; the defaults are our reconstruction of the
    papers' setting.

    Data: ``d`` (token dimension), ``M`` (number of orthogonal patterns, ≤ d), ``L`` (tokens per
    sample), ``alpha_relevant`` α_* and ``alpha_confusion`` α_# (fractions of the L tokens, rounded),
    ``tau`` (noise scale), ``n_classes`` C, ``patterns_per_class`` K, ``n_train``, ``n_test``.
    Network: ``m`` (MLP width), ``xi`` (W_O ~ N(0, ξ²/d)); m_a = m_b = d and W_Q = W_K = W_V = I.
    Training: ``batch`` B, ``lr`` η, ``steps`` T, ``log_every``. ``multi_output`` (a bool): a
    C-output head (one-vs-rest hinge) even for C = 2; the binary task otherwise has one output and
    y = ±1.

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
        if not isinstance(self.multi_output, bool):
            raise LrtTypeError(f"multi_output: expected True or False, got {type(self.multi_output).__name__} {self.multi_output!r}")
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
        if self.M < n_class_patterns:
            raise LrtError(f"M: expected at least C·K = {n_class_patterns} patterns (one per class and pattern), got {self.M}")

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
