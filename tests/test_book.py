"""The book as a reader sees it: no internal words, every chapter opens with its course facts, and the
pages generated from the package (ledger, API) have what they need. Fast: nothing is executed or built.

The built HTML is checked by ``make book`` (tests/check_html.py), ``make student`` (tests/check_student.py)
and ``make test-browser`` (tests/browser_check.py).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path

import pytest

import lrt

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("part*/*.ipynb"))

#: Words of our working notes that the reader does not know: the book speaks of the papers (their
#: statements marked "reconstructed" where they are) and of its own measurements.
INTERNAL_WORDS = re.compile(r"\bspec\b|\bspec's\b|\bthe issue\b|\bissue's\b|\bthe pilot\b", re.I)
#: Internal claim codes: letter-suffixed (C1b), E-codes (E2), any code in parentheses ((C6), (E4)).
INTERNAL_CODES = re.compile(r"\b[CE]\d{1,2}[a-z]\b|\bE\d{1,2}\b|\((?:[CE]\d{1,2}[a-z]?)(?=[\s),;])")


def _load_extension():
    """The book's Sphinx extension (book/_ext/lrt_book.py), which generates the ledger and API pages."""
    if "lrt_book" not in sys.modules:
        spec = importlib.util.spec_from_file_location("lrt_book", BOOK / "_ext" / "lrt_book.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["lrt_book"] = module
        spec.loader.exec_module(module)
    return sys.modules["lrt_book"]


def reader_texts(path: Path):
    """(where, text) for everything a page shows: markdown, code, and outputs of a notebook."""
    if path.suffix == ".md":
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
        return
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        where = f"{path.relative_to(ROOT)} cell {i}"
        yield where, "".join(cell["source"])
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            for key in ("text/plain", "text/html", "text/markdown", "text/latex"):
                if key in data:
                    yield f"{where} output", "".join(data[key])
            if "text" in out:
                yield f"{where} output", "".join(out["text"])


def internal_hits(where: str, text: str) -> list[str]:
    hits = []
    for pattern in (INTERNAL_WORDS, INTERNAL_CODES):
        for m in pattern.finditer(text):
            line = text[: m.start()].count("\n") + 1
            context = text[max(0, m.start() - 40): m.end() + 30].replace("\n", " ")
            hits.append(f"{where} line {line}: {m.group(0)!r} in …{context}…")
    return hits


BOOK_FILES = sorted(p for p in BOOK.rglob("*") if p.suffix in (".md", ".ipynb") and ".ipynb_checkpoints" not in p.parts)


@pytest.mark.parametrize("path", BOOK_FILES, ids=lambda p: str(p.relative_to(BOOK)))
def test_no_internal_words_in_the_book(path):
    hits = [h for where, text in reader_texts(path) for h in internal_hits(where, text)]
    assert not hits, f"{len(hits)} internal words or codes:\n" + "\n".join(hits[:25])


def test_no_internal_words_on_the_ledger_page():
    """The ledger page shows every claim's statement, prediction and tolerance from the registry."""
    hits = []
    for c in lrt.claims():
        for name in ("statement", "prediction", "tolerance"):
            hits += internal_hits(f"claim {c.id} {name}", getattr(c, name))
    assert not hits, f"{len(hits)} internal words or codes:\n" + "\n".join(hits[:25])


def test_no_internal_words_on_the_api_pages():
    """The API pages show the docstrings of the public API and of the experiments modules."""
    hits = []
    for full, (_, obj, _) in _load_extension().api_entries().items():
        hits += internal_hits(f"docstring of {full}", inspect.getdoc(obj) or "")
    assert not hits, f"{len(hits)} internal words or codes:\n" + "\n".join(hits[:25])


def test_the_internal_words_check_can_fail():
    for text in ("as the spec says", "the spec's C5 level", "8.2 Directions (E2)", "bound C1b", "(C6)",
                 "Why the issue matters", "in the pilot run"):
        assert internal_hits("example", text), text
    for text in ("C = 4 classes", "task C4 with four classes", "energy e2 of the update", "specific", "E[x]"):
        assert not internal_hits("example", text), text


def chapter_at_a_glance(path: Path) -> re.Match | None:
    """The admonition, if it opens the chapter: in the title cell after the title, or in the next
    markdown cell, before any code."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for cell in cells[:2]:
        if cell["cell_type"] != "markdown":
            return None
        match = _load_extension().GLANCE.search("".join(cell["source"]))
        if match:
            return match
    return None


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_opens_with_its_course_facts(path):
    match = chapter_at_a_glance(path)
    assert match, (
        f"{path.name}: the first markdown cell after the title must be the admonition\n"
        ":::{admonition} Chapter at a glance\n:class: tip\n**Objectives.** …\n**Prerequisites.** …\n"
        "**Time.** about N min reading, M min running.\n:::"
    )
    assert match["objectives"].strip() and match["prerequisites"].strip()
    assert 0 < int(match["reading"]) <= 180 and 0 <= int(match["running"]) <= 180


def test_every_claim_is_shown_by_its_chapter():
    """The ledger page takes each claim's measured value from the chapter that displays lrt.check(id)."""
    ext = _load_extension()
    recorded = ext.recorded_measurements()
    missing = [c.id for c in lrt.claims() if c.id not in recorded]
    assert not missing, f"claims whose chapter does not display lrt.check(...): {missing}"
    wrong = [(c.id, c.chapter, recorded[c.id]["shown_in"]) for c in lrt.claims() if recorded[c.id]["shown_in"] != c.chapter]
    assert not wrong, f"claims displayed by another chapter than the one registered: {wrong}"


def test_every_chapter_uses_documented_functions():
    """Each chapter's 'Functions used in this chapter' list is not empty, and each API entry names a chapter."""
    ext = _load_extension()
    for chapter in ext.chapters():
        assert ext.used_names(chapter), f"{chapter.label}: no lrt function found in its code cells"
    unlabelled = [full for full, (_, _, label) in ext.api_entries().items()
                  if label is None and full.startswith("lrt.") and not full.startswith("lrt.experiments.")
                  and full.rsplit(".", 1)[-1] not in ("LrtError", "LrtTypeError")
                  and not inspect.isclass(ext.api_entries()[full][1])]
    assert not unlabelled, f"public functions without 'Defined in :ref:`ch-...`': {unlabelled}"


def test_each_chapter_page_offers_its_notebook():
    """The download button (sphinx-book-theme) serves _sources/<chapter>.ipynb, a relative link that works from file://."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["html"]["use_download_button"] is True
    assert config["sphinx"]["config"]["html_theme_options"]["use_download_button"] is True


# ----------------------------------------------------------------------------- student edition


def _student():
    sys.path.insert(0, str(BOOK / "_ext"))
    import student  # book/_ext/student.py

    return student


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_removes_every_solution_and_keeps_every_exercise(path):
    student = _student()
    nb = json.loads(path.read_text(encoding="utf-8"))
    stripped, removed = student.strip_notebook(nb)
    n_solutions = student.solution_count(nb)
    assert n_solutions >= 3, f"{path.name}: expected the chapter's exercises to have solutions"
    assert student.solution_count(stripped) == 0
    text = "\n".join("".join(c["source"]) for c in stripped["cells"])
    assert "{solution" not in text
    count = lambda t: len(re.findall(r"\{exercise\}", t))  # noqa: E731
    assert count(text) == count("\n".join("".join(c["source"]) for c in nb["cells"])) >= 3
    assert removed, f"{path.name}: nothing removed"


def test_student_leak_check_can_fail(tmp_path):
    """The leak check (tests/check_student.py) finds the solutions in the instructor notebooks and none
    in the student ones. (make student runs it on the built HTML as well.)"""
    sys.path.insert(0, str(ROOT))
    from tests import check_student

    student = _student()
    for edition, strip in (("instructor", False), ("student", True)):
        (tmp_path / edition / "html").mkdir(parents=True)
        (tmp_path / edition / "html" / "page.html").write_text("<p>a page</p>")
        for path in CHAPTERS:
            nb = json.loads(path.read_text(encoding="utf-8"))
            target = tmp_path / edition / "notebooks" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(student.strip_notebook(nb)[0] if strip else nb))
    problems, _, n_notebooks, n_lines = check_student.leaks(tmp_path / "instructor")
    assert n_notebooks == len(CHAPTERS) and n_lines >= 3 * len(CHAPTERS)
    assert len(problems) >= n_lines, "the check must find every solution line in the instructor notebooks"
    assert check_student.leaks(tmp_path / "student")[0] == []
