"""lrt: the executable companion to the book *Low-rank training dynamics of transformers*.

The public API: this module only re-exports, from layers that import one way only::

    lrt.experiments, lrt.cli      the book's chapters and the command line (call the public API)
    lrt (this module), lrt.p2     the public API (re-exports, ``__all__``)
    lrt.book                      ledger, figures, runs and benchmarks, notebook execution
    lrt.diagonal, lrt.transformers, lrt.p2's modules   the implementation, one subpackage per part
    lrt.core                      errors, input checks, reproducibility, results files, number format

Every public function names, at the end of its docstring, the chapter label of the book that
derives it.
"""

from lrt.core.errors import LrtError, LrtTypeError
from lrt.core.formatting import below, shown, table
from lrt.core.repro import reproducible
from lrt.core.results import load_results, save_results
from lrt.diagonal.problems import (
    DiagonalProblem,
    DiagonalLinearRegression,
    DiagonalAttentionHead,
    attention_teacher_data,
    small_init,
)
from lrt.diagonal.flows import Trajectory, gradient_flow, gradient_descent, invariant_drift
from lrt.diagonal.log_engine import LogTrajectory, log_variable_flow
from lrt.diagonal.algorithm1 import Staircase, algorithm1
from lrt.diagonal.stages import crossing_times, first_stage_time, rescaled_time, staircase_distance
from lrt.book.ledger import Claim, ClaimResult, check, claims, run_ledger
from lrt.book.figures import figure, figure_names, glue_figure
from lrt.transformers.models import SelfAttention, ViT, CharGPT, attention_products, from_torch_attention
from lrt.transformers.datasets import cifar10_split, digits_split, text_split, unigram_cross_entropy
from lrt.transformers.distributed import Runtime, runtime
from lrt.transformers.tracking import (
    Tracker,
    DigitsTask,
    TextTask,
    train,
    stable_rank,
    perturbation_spectra,
    activation_times,
    half_times,
    gradualness,
)

__version__ = "0.1.0"

__all__ = [
    "LrtError",
    "LrtTypeError",
    "shown",
    "below",
    "table",
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
    "cifar10_split",
    "Runtime",
    "runtime",
    "text_split",
    "unigram_cross_entropy",
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
