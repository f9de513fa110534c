"""Input validation shared by every public entry point (torchdiffeq's `_check_inputs` habit)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from lrt.core.errors import LrtError, LrtTypeError


def positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    """Return `value` as a float, or raise naming `name` if it is not finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        else:
            raise LrtTypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise LrtError(f"{name}: expected a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise LrtError(f"{name}: expected a number {bound}, got {value!r}")
    return value



def positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise LrtTypeError(f"{name}: expected an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise LrtError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def fraction(name: str, value) -> float:
    """A number in [0, 1]."""
    value = positive_float(name, value, allow_zero=True)
    if value > 1:
        raise LrtError(f"{name}: expected a number in [0, 1], got {value!r}")
    return value


def tensor(name: str, value, *, shape: Sequence[int | None] | None = None, finite: bool = True) -> torch.Tensor:
    """Return `value` as a float64 tensor, checking its shape (None = any length) and finiteness."""
    if isinstance(value, torch.Tensor):
        out = value.detach().to(torch.float64)
    elif isinstance(value, (np.ndarray, list, tuple)):
        try:
            out = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise LrtTypeError(f"{name}: expected an array of real numbers, got {value!r}") from None
    else:
        raise LrtTypeError(f"{name}: expected a tensor or array, got {type(value).__name__}")
    if shape is not None:
        ok = out.dim() == len(shape) and all(s is None or s == n for s, n in zip(shape, out.shape))
        if not ok:
            parts = ["*" if s is None else str(s) for s in shape]
            want = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
            raise LrtError(f"{name}: expected shape {want}, got {tuple(out.shape)}")
    if finite and not bool(torch.isfinite(out).all()):
        raise LrtError(f"{name}: expected finite values, got NaN or inf")
    return out


def generator(name: str, value) -> torch.Generator:
    """Accept a torch.Generator or an int seed; return a Generator."""
    if isinstance(value, torch.Generator):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        g = torch.Generator()
        g.manual_seed(int(value))
        return g
    raise LrtTypeError(f"{name}: expected a torch.Generator or an int seed, got {type(value).__name__}")


def choice(name: str, value, allowed) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise LrtError(f"{name}: unknown value {value!r}; expected one of {', '.join(map(str, allowed))}")
    return value


def finite_gradient(where: str, g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return the gradient ``g`` at ``w``, or raise naming the engine ``where`` if it is not finite."""
    if not np.all(np.isfinite(g)):
        raise LrtError(f"{where}: non-finite gradient at w = {np.asarray(w).tolist()} (step size or initialisation too large?)")
    return g


def log_alpha(name: str, value, *, negative: bool = False) -> float:
    """log α as a float: finite (α > 0); with ``negative``, also < 0 (α < 1, a small initialisation)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise LrtTypeError(f"{name}: expected a real number (log of α > 0), got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise LrtError(f"{name}: expected a finite real number (log of α > 0), got {value!r}")
    if negative and value >= 0:
        raise LrtError(f"{name}: expected a finite number < 0 (log of α in (0, 1)), got {value!r}")
    return value
