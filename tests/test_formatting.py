"""lrt.table: the one table helper of the book (HTML in the book, aligned text elsewhere)."""

import pytest

import lrt
from lrt.core.errors import LrtError


def test_table_escapes_entries_and_keeps_columns():
    t = lrt.table(["k", "loss"], [[1, "< 1e-10"], [2, "0.3665"]])
    html = t._repr_html_()
    assert "&lt; 1e-10" in html and "<caption" not in html
    assert html.count("<tr>") == 3 and html.count("<td") == 4
    assert repr(t).splitlines() == ["k     loss", "1  < 1e-10", "2   0.3665"]


def test_table_caption_in_html_and_text():
    t = lrt.table(["seed", "rate"], [[0, "0.72"]], caption="Seed 0 & the <committed> run")
    html = t._repr_html_()
    assert "<caption style='text-align:left'>Seed 0 &amp; the &lt;committed&gt; run</caption>" in html
    assert html.index("<caption") < html.index("<thead>")
    assert repr(t).splitlines()[0] == "Seed 0 & the <committed> run"


def test_table_rejects_ragged_rows():
    with pytest.raises(LrtError, match="rows"):
        lrt.table(["a", "b"], [["1"]])
