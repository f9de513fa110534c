"""The book's figures by name: each chapter and ``python -m lrt figure NAME`` draw the same one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lrt.core.errors import LrtError
from lrt.book.registry import Registry

__all__ = ["FigureSpec", "register_figure", "figure", "figure_names", "figure_specs", "save_figure", "glue_figure"]


@dataclass(frozen=True)
class FigureSpec:
    name: str
    chapter: str
    caption: str
    draw: Callable


_FIGURES: Registry[FigureSpec] = Registry("figure")
FORMATS = (".png", ".svg", ".pdf")


def register_figure(name: str, *, chapter: str, caption: str):
    """Register the decorated zero-argument function (returning a matplotlib Figure) as figure ``name``.

    Defined in :ref:`ch-conservation`.
    """

    def wrap(fn):
        _FIGURES.add(name, FigureSpec(name, chapter, caption, fn))
        return fn

    return wrap


def figure(name: str):
    """Draw the book's figure ``name`` and return the matplotlib Figure.

    Defined in :ref:`ch-conservation`.
    """
    return _FIGURES.get(name).draw()


def figure_names() -> list[str]:
    """The names of all figures of the book, sorted.

    Defined in :ref:`ch-conservation`.
    """
    return _FIGURES.names()


def figure_specs() -> list[FigureSpec]:
    return [s for _, s in _FIGURES.items()]


def save_figure(name: str, out: str | Path | None = None) -> Path:
    """Draw figure ``name`` and save it to ``out`` (default ``figures/NAME.png``); return the path.

    The format follows the suffix: ``.png``, ``.svg`` or ``.pdf``.

    Defined in :ref:`ch-conservation`.
    """
    spec = _FIGURES.get(name)
    path = Path(out) if out is not None else Path("figures") / f"{name}.png"
    if path.suffix.lower() not in FORMATS:
        raise LrtError(f"--out: expected a file ending in {', '.join(FORMATS)}, got {str(path)!r}")
    import matplotlib.pyplot as plt

    fig = spec.draw()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    return path


def glue_figure(name: str) -> None:
    """Draw figure ``name`` and glue it into the book under the key ``name`` (for ``{glue:figure}``),
    without also showing it inline; the notebook then places it with a numbered caption.

    Defined in :ref:`ch-conservation`.
    """
    import matplotlib.pyplot as plt
    from myst_nb import glue

    fig = figure(name)
    glue(name, fig, display=False)
    plt.close(fig)
