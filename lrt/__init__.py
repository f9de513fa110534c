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
from lrt.engines import LogTrajectory, log_variable_flow  # noqa: E402
from lrt.algorithm1 import Staircase, algorithm1  # noqa: E402
from lrt.stages import crossing_times, first_stage_time, rescaled_time, staircase_distance  # noqa: E402
from lrt.ledger import Claim, ClaimResult, check, claims, run_ledger  # noqa: E402
from lrt.figures import figure, figure_names, glue_figure  # noqa: E402
from lrt.transformer import SelfAttention, ViT, CharGPT, attention_products, from_torch_attention  # noqa: E402
from lrt.datasets import digits_split, text_split  # noqa: E402
from lrt.tracking import (  # noqa: E402
    Tracker,
    DigitsTask,
    TextTask,
    train,
    stable_rank,
    perturbation_spectra,
    save_results,
    load_results,
    activation_times,
    half_times,
    gradualness,
)

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
    "LogTrajectory",
    "log_variable_flow",
    "Staircase",
    "algorithm1",
    "rescaled_time",
    "first_stage_time",
    "crossing_times",
    "staircase_distance",
    "Claim",
    "ClaimResult",
    "check",
    "claims",
    "run_ledger",
    "figure",
    "figure_names",
    "glue_figure",
    "SelfAttention",
    "ViT",
    "CharGPT",
    "attention_products",
    "from_torch_attention",
    "digits_split",
    "text_split",
    "Tracker",
    "DigitsTask",
    "TextTask",
    "train",
    "stable_rank",
    "perturbation_spectra",
    "save_results",
    "load_results",
    "activation_times",
    "half_times",
    "gradualness",
]
