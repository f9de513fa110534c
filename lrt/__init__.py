"""lrt: the executable companion to the book *Low-rank training dynamics of transformers*.

The package root only re-exports; code lives in the submodules. Every public function
names, at the end of its docstring, the chapter label of the book that derives it.
"""


class LrtError(ValueError):
    """The one error type of lrt: bad input, with the argument named and what was expected.

    A subclass of ``ValueError``, so ``except ValueError`` catches it too.
    """


class LrtTypeError(LrtError, TypeError):
    """An argument of the wrong type (also a ``TypeError``)."""


__version__ = "0.1.0"

from lrt.repro import reproducible  # noqa: E402
from lrt.models import (  # noqa: E402
    DiagonalProblem,
    DiagonalLinearRegression,
    DiagonalAttentionHead,
    attention_teacher_data,
    small_init,
)
from lrt.flows import Trajectory, gradient_flow, gradient_descent, invariant_drift  # noqa: E402
from lrt.ledger import Claim, ClaimResult, check, claims, run_ledger  # noqa: E402
from lrt.figures import figure, figure_names, glue_figure  # noqa: E402

__all__ = [
    "LrtError",
    "LrtTypeError",
    "reproducible",
    "DiagonalProblem",
    "DiagonalLinearRegression",
    "DiagonalAttentionHead",
    "attention_teacher_data",
    "small_init",
    "Trajectory",
    "gradient_flow",
    "gradient_descent",
    "invariant_drift",
    "Claim",
    "ClaimResult",
    "check",
    "claims",
    "run_ledger",
    "figure",
    "figure_names",
    "glue_figure",
]
