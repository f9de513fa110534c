"""Spectra of the updates ΔW = W⁽ᵀ⁾ − W⁽⁰⁾ and how much of them acts on the label-relevant patterns."""

from __future__ import annotations

import torch

from lrt.core import checks as _checks
from lrt.core.errors import LrtTypeError
from lrt.p2.network import WEIGHTS
from lrt.p2.training import P2Run

#: singular values of a basis below this fraction of the largest count as zero (dependent rows)
BASIS_RTOL = 1e-10


def run_summary(run: P2Run) -> dict[str, torch.Tensor]:
    """What the sweeps keep of a run: the singular values ``sigma_W_*`` ``(min shape,)`` of the four
    updates, ``offspan_W_*`` (:func:`off_span_fraction` w.r.t. the C·K label-relevant patterns; for
    W_O w.r.t. their images W_V μ), and the log series (``steps``, ``test_hinge``, …).

    >>> from lrt.p2 import P2Config, run_p2
    >>> r = run_p2(P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=16,
    ...                     n_train=64, n_test=32, batch=16, steps=10, log_every=10), seed=0)
    >>> sorted(run_summary(r))[:3]
    ['attention', 'offspan_W_K', 'offspan_W_O']

    Defined in :ref:`ch-low-rank-updates`.
    """
    if not isinstance(run, P2Run):
        raise LrtTypeError(f"run: expected a P2Run (lrt.p2.run_p2), got {type(run).__name__}")
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
    return spectrum_of(torch.linalg.svdvals(delta), k, cut=cut)


def spectrum_of(sigma: torch.Tensor, k: int = 2, *, cut: float = 0.05) -> dict:
    """:func:`update_spectrum` from the singular values ``sigma`` ``(r,)`` (descending) instead of
    the matrix: ``energy`` e_k, ``tail`` σ_{k+1}/σ_1 and the numerical ``rank`` at ``cut``.

    >>> s = spectrum_of(torch.tensor([3.0, 1.0, 0.1]), 1)
    >>> round(s["energy"], 3), round(s["tail"], 4), s["rank"]
    (0.899, 0.3333, 2)

    Defined in :ref:`ch-low-rank-updates`.
    """
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

    Any rows span a subspace: they are orthonormalised first (by an SVD; directions with singular
    value below 1e-10 of the largest are dependent and dropped), so repeated or dependent rows give
    the same answer as a basis, and rows that are all zero span nothing (the fraction is 1).
    A zero update has fraction 0.

    >>> off_span_fraction(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    0.7071067811865475
    >>> round(off_span_fraction(torch.eye(3), torch.tensor([[1.0, 0, 0], [2.0, 0, 0]])), 4)
    0.8165

    Defined in :ref:`ch-low-rank-updates`.
    """
    delta = _checks.tensor("delta", delta, shape=(None, None))
    basis = _checks.tensor("basis", basis, shape=(None, delta.shape[1]))
    total = torch.linalg.matrix_norm(delta).item()
    if total == 0:
        return 0.0
    if basis.numel() == 0 or not bool(basis.abs().max() > 0):
        return 1.0
    _, sigma, Vh = torch.linalg.svd(basis, full_matrices=False)
    Q = Vh[sigma > BASIS_RTOL * sigma[0]].T  # (q, r): orthonormal basis of the row span
    rest = delta - (delta @ Q) @ Q.T
    return torch.linalg.matrix_norm(rest).item() / total
