"""Reproducibility settings shared by the book, the tests and the CLI."""

import os

import torch

__all__ = ["reproducible"]


def reproducible(threads: int = 1) -> None:
    """Make every later computation deterministic: float64 by default, deterministic
    torch algorithms, a fixed thread count, and a non-interactive-safe matplotlib style.

    Each chapter calls this in its first code cell, so that the outputs committed in the
    notebook are exactly what strict nbval re-computes.

    Arguments:
        threads: number of intra-op threads torch may use (default 1).

    >>> reproducible()
    >>> torch.get_default_dtype()
    torch.float64

    Defined in :ref:`ch-conservation`.
    """
    if not isinstance(threads, int) or threads < 1:
        from lrt.core.errors import LrtError

        raise LrtError(f"threads: expected a positive int, got {threads!r}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_default_dtype(torch.float64)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    import matplotlib

    matplotlib.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "figure.figsize": (6.4, 4.0),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "lrt",
        }
    )
