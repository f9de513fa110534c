"""The one rule for printing numbers in the book.

A chapter's printed output is re-checked, digit for digit, on the reader's machine (strict nbval),
and another CPU's kernels change the last digits of float64 results. So a number is printed only to
the digits its own numerical error cannot change:

* a measured quantity (a stage time, a loss on a plateau, a ratio, a rate) with :func:`shown`, to
  the significant digits the claim needs — never more than the computation can defend;
* a round-off-level quantity (a drift that is zero in exact arithmetic, an error against a closed
  form) with :func:`below`, as a bound against its tolerance, never as a value;
* never a solver's evaluation count or a wall time (the benchmarks print those).

:func:`table` lays such already formatted numbers out as a table that fits the page (HTML in the
book, aligned text elsewhere); it formats nothing itself.
"""

from __future__ import annotations

import html
import math

from lrt.core.errors import LrtError, LrtTypeError

__all__ = ["shown", "below", "table", "Table"]


def _real(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise LrtTypeError(f"{name}: expected a real number, got {type(value).__name__}") from None
    return value


def shown(value, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits: fixed notation between 1e-3 and 1e6, else
    scientific; integers print as integers.

    >>> shown(0.605634127), shown(1.234567e-7, 2), shown(12), shown(123456.7, 3)
    ('0.6056', '1.2e-07', '12', '1.23e+05')

    Defined in :ref:`ch-conservation`.
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 15:
        raise LrtError(f"digits: expected an int between 1 and 15, got {digits!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = _real("value", value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and not 1e-3 <= abs(value) < 10 ** min(digits, 6):
        return f"{value:.{digits - 1}e}"
    return f"{value:#.{digits}g}".rstrip(".") if value != 0 else "0"


def below(value, tolerance, *, bound=None) -> str:
    """A round-off-level quantity as a bound, never as a value: ``"< bound (tolerance tol)"``.

    ``tolerance`` is what the claim allows; ``bound`` (default: the tolerance) is a tighter bound
    the caller states in advance, with room for other machines' round-off. Raises if ``|value|`` is
    not below the bound, so a failed check never prints as a pass. The text depends only on the
    two bounds, so it is the same on every machine where the check holds.

    >>> below(5.9e-16, 1e-10, bound=1e-13)
    '< 1e-13 (tolerance 1e-10)'
    >>> below(4.5e-11, 1e-10)
    '< 1e-10'

    Defined in :ref:`ch-conservation`.
    """
    value, tolerance = abs(_real("value", value)), _real("tolerance", tolerance)
    if not tolerance > 0:
        raise LrtError(f"tolerance: expected a number > 0, got {tolerance!r}")
    limit = tolerance if bound is None else _real("bound", bound)
    if not 0 < limit <= tolerance:
        raise LrtError(f"bound: expected a number in (0, tolerance={tolerance:g}], got {limit!r}")
    if not value < limit:
        raise LrtError(f"value: {value:.3g} is not below the bound {limit:.3g}")
    text = f"< {_short(limit)}"
    return text if bound is None else f"{text} (tolerance {_short(tolerance)})"


def _short(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e+") if x < 1e-3 or x >= 1e4 else f"{x:g}"


class Table:
    """Rows of text under a header: shown as an HTML table in the book, as aligned text elsewhere."""

    def __init__(self, header, rows, caption: str = ""):
        self.caption = str(caption)
        self.header = [str(h) for h in header]
        self.rows = [[str(x) for x in row] for row in rows]
        if any(len(row) != len(self.header) for row in self.rows):
            raise LrtError(f"rows: expected {len(self.header)} entries per row (one per column of the header)")

    def __repr__(self) -> str:
        widths = [max(len(r[j]) for r in [self.header, *self.rows]) for j in range(len(self.header))]
        lines = [self.caption] if self.caption else []
        lines += ["  ".join(x.rjust(w) for x, w in zip(r, widths)) for r in [self.header, *self.rows]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:right'>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td style='text-align:right'>{html.escape(x)}</td>" for x in r) + "</tr>"
                       for r in self.rows)
        cap = f"<caption style='text-align:left'>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table(header, rows, caption: str = "") -> Table:
    """A table of already formatted entries (use :func:`shown` and :func:`below` for numbers),
    with an optional one-line ``caption`` above it.

    >>> table(["η", "drift"], [["0.04", shown(1.0098)], ["0.02", shown(0.4741)]])
       η   drift
    0.04   1.010
    0.02  0.4741
    >>> table(["seed", "rate"], [[0, "0.72"]], caption="Seed 0, the committed run")
    Seed 0, the committed run
    seed  rate
       0  0.72

    Defined in :ref:`ch-conservation`.
    """
    return Table(header, rows, caption)
