"""How a short re-run is compared with the first rows of a committed results file.

The committed files (lrt/data/*.pt) were written on one CPU. Another CPU, or the same one with
``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE``, sums in another order and flips last bits, so a
bitwise comparison fails there although nothing changed. The comparison below is the one the tests use.

Tolerance, fixed before the measurements quoted here and justified as follows:

* the series are float64 (unit round-off 1.1e-16); a different kernel changes the rounding of each
  reduction by a few ulp of that step's values;
* a short run is at most 50 optimisation steps (Part II: SGD and Adam, 50 steps; chapter 6: Adam,
  2 logging periods of 10 or 5 steps), each a smooth map of the previous weights, so these last-bit
  differences grow at most by the product of the steps' amplification factors. Measured
  (torch's vectorised kernels against ``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE``, on every
  series of every short-run test): at most 2e-14 of the series' largest entry;
* :data:`RELATIVE` = 1e-10 of the series' largest entry leaves a factor of about 5000 above that for
  other CPUs and libraries, and still fails on a real change: the default Part II run with its step
  size multiplied by (1 + 1e-8) moves its series by 4e-9 of their scale (40 times the tolerance), a
  changed seed by 1e-2, updating the parameters one after the other instead of together by 1e-2;
  ``tests/test_reproduction.py`` checks these changes fail.

Integer series (steps, counts) must be equal; NaN and ±inf must sit at the same places.
"""

from __future__ import annotations

from typing import Mapping

import torch

#: Largest allowed |short − committed|, as a fraction of the largest finite |committed| of the series.
RELATIVE = 1e-10


def differences(short: Mapping[str, torch.Tensor], committed: Mapping[str, torch.Tensor], keys=None) -> list[str]:
    """The keys (of ``keys``, default all of ``short``) whose series differ beyond :data:`RELATIVE`,
    each with what differs; an empty list when ``short`` reproduces ``committed``."""
    out = []
    for key in short if keys is None else keys:
        a, b = torch.as_tensor(short[key]), torch.as_tensor(committed[key])
        if a.shape != b.shape:
            out.append(f"{key}: shape {tuple(a.shape)} vs committed {tuple(b.shape)}")
        elif not (a.dtype.is_floating_point or b.dtype.is_floating_point):
            if not torch.equal(a, b):
                out.append(f"{key}: integers differ")
        else:
            a, b = a.double(), b.double()
            finite = torch.isfinite(b)
            if not (torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a[torch.isinf(b)], b[torch.isinf(b)])
                    and torch.isfinite(a[finite]).all()):
                out.append(f"{key}: NaN or inf at other places")
                continue
            if not finite.any():
                continue
            scale = b[finite].abs().max().item()
            gap = (a[finite] - b[finite]).abs().max().item()
            if gap > RELATIVE * scale:
                out.append(f"{key}: max |difference| {gap:.3g} > {RELATIVE:g} × {scale:.3g}")
    return out


def assert_reproduces(short: Mapping[str, torch.Tensor], committed: Mapping[str, torch.Tensor], keys=None) -> None:
    """Fail, naming the series, unless ``short`` reproduces ``committed`` within :data:`RELATIVE`."""
    bad = differences(short, committed, keys)
    assert not bad, "short run does not reproduce the committed file:\n" + "\n".join(bad)
