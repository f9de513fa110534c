"""Figures reach the book without their image bytes being compared by nbval (lrt.glue_figure,
lrt.book.figures.read_notebook)."""

import json
from pathlib import Path

import nbformat
import pytest
from myst_nb.ext.glue import extract_glue_data_cell

import lrt
from lrt.book import figures

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
#: the only image keys that nbval never compares (it cannot judge an image)
NOT_COMPARED = {"image/png", "image/jpeg"}


def test_glue_figure_shows_a_plain_image_marked_with_its_name(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda bundle, **kw: shown.append((bundle, kw)))
    lrt.glue_figure("p2-attention")
    ((bundle, kw),) = shown
    assert kw["raw"] and kw["metadata"][figures.FIGURE_KEY] == "p2-attention"
    assert bundle["image/png"] and bundle["text/plain"].startswith("<Figure size")
    assert set(bundle) <= NOT_COMPARED | {"text/plain"}


def test_the_book_reader_turns_a_marked_output_into_a_hidden_glue_record():
    nb = nbformat.v4.new_notebook()
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 10x10 with 1 Axes>"}
    cell = nbformat.v4.new_code_cell("lrt.glue_figure('x')", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="printed\n"),
        nbformat.v4.new_output("display_data", data=png, metadata={figures.FIGURE_KEY: "x"}),
    ])
    nb.cells.append(cell)
    read = figures.read_notebook(nbformat.writes(nb))
    ((name, record),) = extract_glue_data_cell(read.cells[0])
    assert name == "x" and record["data"] == png  # what {glue:figure} x places
    assert [o["output_type"] for o in read.cells[0].outputs] == ["stream"]  # the cell shows no image


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_committed_output_holds_image_bytes_that_nbval_compares(path):
    nb = json.loads(path.read_text())
    compared = [(i, key) for i, cell in enumerate(nb["cells"]) for out in cell.get("outputs", [])
                for key in out.get("data", {}) if "image" in key and key not in NOT_COMPARED]
    assert not compared, f"re-execute {path.name}: outputs with compared image data {compared}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_glued_figure_of_a_chapter_is_in_its_notebook(path):
    nb = figures.read_notebook(path.read_text())
    wanted = {line.split()[1] for cell in nb.cells if cell.cell_type == "markdown"
              for line in cell.source.splitlines() if line.startswith(":::{glue:figure}")}
    glued = {name for cell in nb.cells if cell.cell_type == "code" for name, _ in extract_glue_data_cell(cell)}
    assert wanted <= glued
    assert all(name in lrt.figure_names() for name in glued)
