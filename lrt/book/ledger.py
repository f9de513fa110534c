"""The ledger of claims: every claim the book checks, with its measured value and verdict.

A claim is registered next to the experiment that measures it (in ``lrt.experiments``) with
:func:`claim`; chapters display :func:`check` of it, and ``python -m lrt ledger`` recomputes all
of them, so the book and the ledger cannot disagree.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from tqdm import tqdm

from lrt.core.errors import LrtError
from lrt.book.registry import Registry

__all__ = ["Claim", "ClaimResult", "Measurement", "claim", "check", "claims", "run_ledger"]


@dataclass(frozen=True)
class Measurement:
    """What a claim's measuring function returns: the measured value and the verdict."""

    value: float
    passed: bool
    detail: str = ""

    @classmethod
    def at_most(cls, value: float, bound: float, detail: str = "") -> "Measurement":
        return cls(float(value), bool(value <= bound), detail)

    @classmethod
    def at_least(cls, value: float, bound: float, detail: str = "") -> "Measurement":
        return cls(float(value), bool(value >= bound), detail)


@dataclass(frozen=True)
class Claim:
    """A checked claim: ``id`` (e.g. ``P1.conservation``), the chapter label that checks it, the
    statement, the measurable prediction, the tolerance in words, and its measuring function."""

    id: str
    chapter: str
    statement: str
    prediction: str
    tolerance: str
    measure: Callable[[], Measurement]


@dataclass(frozen=True, repr=False)
class ClaimResult:
    """A claim with its measurement. ``seconds`` (wall time) is kept out of the notebook display."""

    id: str
    chapter: str
    statement: str
    prediction: str
    tolerance: str
    measured: float
    passed: bool
    detail: str
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "FAIL"

    def __str__(self) -> str:
        return (
            f"{self.id} [{self.verdict}] measured {_fmt(self.measured)} (tolerance: {self.tolerance})"
            + (f"; {self.detail}" if self.detail else "")
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else "#cf222e"
        rows = [
            ("statement", self.statement),
            ("prediction", self.prediction),
            ("measured", _fmt(self.measured) + (f" ({self.detail})" if self.detail else "")),
            ("tolerance", self.tolerance),
        ]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows)
        return (
            f"<table><caption style='text-align:left'><b>Ledger claim <code>{self.id}</code>: "
            f"<span style='color:{colour}'>{self.verdict}</span></b></caption>{body}</table>"
        )


def _fmt(x: float) -> str:
    if x == 0 or math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


_CLAIMS: Registry[Claim] = Registry("claim")
_RESULTS: dict[str, ClaimResult] = {}


def claim(id: str, *, chapter: str, statement: str, prediction: str, tolerance: str):
    """Register the decorated zero-argument function as the measurement of claim ``id``.

    The function returns a :class:`Measurement`.

    Defined in :ref:`ch-conservation`.
    """

    def wrap(fn: Callable[[], Measurement]):
        _CLAIMS.add(id, Claim(id, chapter, statement, prediction, tolerance, fn))
        return fn

    return wrap


def claims() -> list[Claim]:
    """Every registered claim, sorted by id.

    >>> "P1.conservation" in [c.id for c in claims()]
    True

    Defined in :ref:`ch-conservation`.
    """
    return [c for _, c in _CLAIMS.items()]


def check(id: str) -> ClaimResult:
    """Measure claim ``id`` (once per process; later calls reuse the result).

    Defined in :ref:`ch-conservation`.
    """
    if id not in _RESULTS:
        c = _CLAIMS.get(id)
        start = time.perf_counter()
        m = c.measure()
        if not isinstance(m, Measurement):
            raise TypeError(f"claim {id}: the measuring function returned {type(m).__name__}, not a Measurement")
        _RESULTS[id] = ClaimResult(
            c.id, c.chapter, c.statement, c.prediction, c.tolerance, m.value, m.passed, m.detail,
            time.perf_counter() - start,
        )
    return _RESULTS[id]


def run_ledger(ids: Iterable[str] | None = None, *, progress: bool = False) -> list[ClaimResult]:
    """Measure the given claims (default: all of them), in id order.

    ``ids`` may hold exact ids or prefixes ending in ``.`` or ``*`` (``P1.``, ``P2.*``).

    Defined in :ref:`ch-conservation`.
    """
    every = [c.id for c in claims()]
    if ids is None:
        chosen = every
    else:
        chosen = []
        for key in ids:
            prefix = key.rstrip("*")
            match = [i for i in every if i == key or (key.endswith(("*", ".")) and i.startswith(prefix))]
            if not match:
                raise LrtError(f"claim: unknown claim {key!r}; expected one of: {', '.join(every)}")
            chosen += [i for i in match if i not in chosen]
    return [check(i) for i in tqdm(chosen, disable=not progress, desc="ledger")]
