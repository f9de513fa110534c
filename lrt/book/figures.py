"""The book's figures by name: each chapter and ``python -m lrt figure NAME`` draw the same one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lrt.core.errors import LrtError
from lrt.book.registry import Registry

__all__ = ["FigureSpec", "register_figure", "figure", "figure_names", "figure_specs", "save_figure", "glue_figure", "read_notebook"]


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


#: The output metadata key with which :func:`glue_figure` marks a figure for the book.
FIGURE_KEY = "lrt_figure"


def glue_figure(name: str) -> None:
    """Draw figure ``name`` for the book, where ``{glue:figure}`` places it with a numbered caption.

    The notebook keeps the figure as an ordinary ``image/png`` output whose metadata says
    ``{"lrt_figure": name}``; when the book is built, :func:`read_notebook` turns that output into
    myst-nb's glue record ``name``, so the cell itself shows nothing and the figure appears where the
    chapter's ``{glue:figure}`` puts it. (``myst_nb.glue`` would store the PNG under
    ``application/papermill.record/image/png``, which strict nbval compares byte for byte, and a
    figure's bytes change with the last bits of its data on another CPU. nbval never compares
    ``image/png``: it cannot judge an image. The figure's data are checked through the numbers the
    chapter prints and the tests; of this output nbval compares the text ``<Figure size …>``.)

    Defined in :ref:`ch-conservation`.
    """
    import base64
    import io

    import matplotlib.pyplot as plt
    from IPython.display import display

    fig = figure(name)
    png = io.BytesIO()
    fig.canvas.print_figure(png, format="png", bbox_inches="tight")  # as IPython's inline display does
    bundle = {"image/png": base64.b64encode(png.getvalue()).decode("ascii"), "text/plain": repr(fig)}
    display(bundle, raw=True, metadata={FIGURE_KEY: name})
    plt.close(fig)


def read_notebook(text: str):
    """Read a book notebook for myst-nb (``nb_custom_formats`` in ``_config.yml``): the standard
    reader, with each output that :func:`glue_figure` marked turned into a glue record of its name
    (hidden in its cell, placed by ``{glue:figure}``).

    Defined in :ref:`ch-conservation`.
    """
    import nbformat
    from myst_nb.ext.glue import GLUE_PREFIX

    notebook = nbformat.reads(text, as_version=4)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get(FIGURE_KEY)
            if name and output.get("output_type") == "display_data":
                output["data"] = {GLUE_PREFIX + key: value for key, value in output["data"].items()}
                output["metadata"]["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    return notebook
