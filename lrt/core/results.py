"""Results files: small dicts of tensors and plain values, written with ``torch.save`` and read
back with ``weights_only=True`` (no code is ever unpickled)."""

from __future__ import annotations

from pathlib import Path

import torch

from lrt.core.errors import LrtError, LrtTypeError

__all__ = ["save_results", "load_results"]

def save_results(results: dict, path: str | Path) -> Path:
    """Write a results dict (tensors plus a ``config`` dict of plain values) with ``torch.save``;
    return the path.

    >>> import tempfile, pathlib
    >>> path = save_results({"step": torch.arange(3), "config": {"lr": 0.1}}, pathlib.Path(tempfile.mkdtemp()) / "r.pt")
    >>> load_results(path)["config"]
    {'lr': 0.1}

    Defined in :ref:`ch-beyond-diagonal`.
    """
    if not isinstance(results, dict):
        raise LrtTypeError(f"results: expected a dict, got {type(results).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(results, path)
    return path


def load_results(path: str | Path, *, run: str | None = None) -> dict:
    """Read a results file written by :func:`save_results` (``weights_only=True``: tensors and plain
    values only, no code is unpickled). See :func:`save_results` for an example. ``run``: the
    ``python -m lrt run`` command that creates the file, named in the error if it is missing.

    Defined in :ref:`ch-beyond-diagonal`.
    """
    path = Path(path)
    if not path.is_file():
        hint = f"; create it with `python -m lrt run {run}`" if run else ""
        raise LrtError(f"path: expected an existing results file, got {str(path)!r}{hint}")
    return torch.load(path, weights_only=True)
