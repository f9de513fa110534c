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

from lrt.core.errors import LrtError, LrtTypeError
from lrt.book.registry import Registry

__all__ = ["Claim", "ClaimResult", "Measurement", "claim", "check", "claims", "run_ledger"]

#: when a claim's tolerance was set: before its measurement (the rule), or moved after seeing it
FIXED_BEFORE, MOVED_AFTER = "fixed before", "moved after"


@dataclass(frozen=True)
class Measurement:
    """What a claim's measuring function returns: the measured value and the verdict.

    ``value`` and ``passed`` are stored as a plain Python ``float`` and ``bool`` whatever real scalar
    they are given (Python, numpy or one-element torch), so every result is plain JSON. ``shown``,
    when given, is the text printed in place of the value (for a round-off-level value, the bound of
    :func:`lrt.core.formatting.below`; see that module for the rule).
    """

    value: float
    passed: bool
    detail: str = ""
    shown: str = ""

    def __post_init__(self):
        object.__setattr__(self, "value", plain_float("value", self.value))
        object.__setattr__(self, "passed", plain_bool("passed", self.passed))
        for name in ("detail", "shown"):
            if not isinstance(getattr(self, name), str):
                raise LrtTypeError(f"{name}: expected a str, got {type(getattr(self, name)).__name__}")

    @classmethod
    def at_most(cls, value: float, bound: float, detail: str = "", shown: str = "") -> "Measurement":
        return cls(value, plain_float("value", value) <= bound, detail, shown)

    @classmethod
    def at_least(cls, value: float, bound: float, detail: str = "", shown: str = "") -> "Measurement":
        return cls(value, plain_float("value", value) >= bound, detail, shown)


def _scalar(name: str, value):
    """The Python scalar inside ``value`` (Python, numpy scalar or 0-d array, one-element tensor)."""
    if hasattr(value, "numel") and callable(value.numel):  # torch
        if value.numel() != 1:
            raise LrtTypeError(f"{name}: expected a scalar, got a tensor of shape {tuple(value.shape)}")
        return value.item()
    if hasattr(value, "ndim") and hasattr(value, "item"):  # numpy scalar or array
        if value.ndim != 0:
            raise LrtTypeError(f"{name}: expected a scalar, got an array of shape {value.shape}")
        return value.item()
    return value


def plain_float(name: str, value) -> float:
    """``value`` (Python, numpy or one-element torch real) as a Python ``float``, for JSON.

    >>> import numpy as np, torch
    >>> [type(plain_float("x", v)).__name__ for v in (1, np.float32(0.5), torch.tensor(2.0))]
    ['float', 'float', 'float']

    Defined in :ref:`ch-conservation`.
    """
    value = _scalar(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LrtTypeError(f"{name}: expected a real number, got {type(value).__name__}")
    return float(value)


def plain_bool(name: str, value) -> bool:
    """``value`` (Python, numpy or one-element torch bool) as a Python ``bool``, for JSON.

    >>> import numpy as np, torch
    >>> plain_bool("passed", np.float64(1.0) < 2), plain_bool("passed", torch.tensor(False))
    (True, False)

    Defined in :ref:`ch-conservation`.
    """
    value = _scalar(name, value)
    if not isinstance(value, bool):
        raise LrtTypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Claim:
    """A checked claim: ``id`` (e.g. ``P1.conservation``), the chapter label that checks it, the
    statement, the measurable prediction, the tolerance in words, its measuring function, and
    ``tolerance_set``: whether the tolerance was fixed before the measurement or moved after it."""

    id: str
    chapter: str
    statement: str
    prediction: str
    tolerance: str
    measure: Callable[[], Measurement]
    tolerance_set: str = FIXED_BEFORE


@dataclass(frozen=True, repr=False)
class ClaimResult:
    """A claim with its measurement. ``seconds`` (wall time) is kept out of the notebook display.

    ``verdict`` is ``pass``, ``FAIL``, or — for a tolerance moved after its measurement, which is
    never a plain pass — ``pass (tolerance moved after measurement)``."""

    id: str
    chapter: str
    statement: str
    prediction: str
    tolerance: str
    measured: float
    passed: bool
    detail: str
    seconds: float
    tolerance_set: str = FIXED_BEFORE
    shown: str = ""

    def as_dict(self) -> dict:
        """The result as a dict of plain ``str``, ``float`` and ``bool`` (JSON as it is), with its verdict."""
        return asdict(self) | {"verdict": self.verdict}

    @property
    def measured_text(self) -> str:
        """The measured value as the book prints it."""
        return self.shown or _fmt(self.measured)

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "FAIL"
        return "pass" if self.tolerance_set == FIXED_BEFORE else "pass (tolerance moved after measurement)"

    def __str__(self) -> str:
        return (
            f"{self.id} [{self.verdict}] measured {self.measured_text} (tolerance: {self.tolerance})"
            + (f"; {self.detail}" if self.detail else "")
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = "#cf222e" if not self.passed else "#1a7f37" if self.tolerance_set == FIXED_BEFORE else "#9a6700"
        rows = [
            ("statement", self.statement),
            ("prediction", self.prediction),
            ("measured", self.measured_text + (f" ({self.detail})" if self.detail else "")),
            ("tolerance", f"{self.tolerance} ({self.tolerance_set} measurement)"),
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


def claim(id: str, *, chapter: str, statement: str, prediction: str, tolerance: str, tolerance_set: str = FIXED_BEFORE):
    """Register the decorated zero-argument function as the measurement of claim ``id``.

    The function returns a :class:`Measurement`. ``tolerance_set`` records when the tolerance was
    set: ``"fixed before"`` the measurement (the rule) or ``"moved after"`` it (then the tolerance
    text says what moved and why, and a pass is shown as ``pass (tolerance moved after measurement)``).

    Defined in :ref:`ch-conservation`.
    """

    if tolerance_set not in (FIXED_BEFORE, MOVED_AFTER):
        raise LrtError(f"tolerance_set: expected {FIXED_BEFORE!r} or {MOVED_AFTER!r}, got {tolerance_set!r}")

    def wrap(fn: Callable[[], Measurement]):
        _CLAIMS.add(id, Claim(id, chapter, statement, prediction, tolerance, fn, tolerance_set))
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
            raise LrtTypeError(f"claim {id}: the measuring function returned {type(m).__name__}, not a Measurement")
        _RESULTS[id] = ClaimResult(
            c.id, c.chapter, c.statement, c.prediction, c.tolerance, m.value, m.passed, m.detail,
            time.perf_counter() - start, c.tolerance_set, m.shown,
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
