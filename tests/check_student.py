"""Prove that the student edition leaks no solution: ``python -m tests.check_student _build/student``.

Reads the *instructor* sources (book/), takes every line of every exercise solution that is long and
specific enough to identify it (solution code and printed output, and plain prose lines of the solution
text) and not also present outside the solutions, and fails if any of them appears in a page of the
student HTML (its text, tags removed) or in a student notebook. It also fails if a student page holds a
solution element (sphinx-exercise's ``solution`` class), or if the edition has no pages or notebooks.
Run against the instructor build (``_build/html``), the same check finds the solutions (see
tests/test_book.py), so it can fail.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))

import student  # noqa: E402  (book/_ext/student.py)

SOLUTION_CLASS = re.compile(r"""class=["'][^"']*\bsolution\b""")
MARKUP = re.compile(r"[$\\{}`*_|#<>\[\]]")


def notebook_texts(nb: dict) -> str:
    parts = []
    for c in nb["cells"]:
        parts.append("".join(c["source"]))
        for o in c.get("outputs", []):
            text = o.get("data", {}).get("text/plain", o.get("text", ""))
            parts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(parts)


def fingerprints() -> dict[str, list[str]]:
    """Lines that identify a solution, per instructor notebook."""
    found = {}
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        nb = json.loads(path.read_text(encoding="utf-8"))
        kept, removed = student.strip_notebook(nb)
        elsewhere = notebook_texts(kept)
        lines = []
        for text in removed:
            for line in text.splitlines():
                line = " ".join(line.split())
                # long, and not markup: code, printed output, plain prose
                if len(line) >= 24 and not MARKUP.search(line) and line not in elsewhere:
                    lines.append(line)
        found[str(path.relative_to(ROOT))] = sorted(set(lines))
    return found


def page_text(page: Path) -> str:
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


def leaks(edition: Path) -> tuple[list[str], int, int, int]:
    prints = fingerprints()
    every = sorted({line for lines in prints.values() for line in lines})
    pages = sorted(p for p in (edition / "html").rglob("*.html") if "_static" not in p.parts)
    notebooks = sorted((edition / "notebooks").rglob("*.ipynb"))
    problems = []
    for page in pages:
        raw = page.read_text(encoding="utf-8")
        if SOLUTION_CLASS.search(raw):
            problems.append(f"{page}: holds a solution element")
        text = page_text(page)
        problems += [f"{page}: solution text {line!r}" for line in every if line in text]
    for nb_path in notebooks:
        text = " ".join(notebook_texts(json.loads(nb_path.read_text(encoding="utf-8"))).split())
        problems += [f"{nb_path}: solution text {line!r}" for line in every if line in text]
    return problems, len(pages), len(notebooks), len(every)


def main(edition: str) -> int:
    problems, n_pages, n_notebooks, n_lines = leaks(Path(edition))
    if not n_pages or not n_notebooks:
        print(f"check_student: no pages ({n_pages}) or notebooks ({n_notebooks}) under {edition}; run make student", file=sys.stderr)
        return 1
    for p in problems[:40]:
        print(p, file=sys.stderr)
    print(f"check_student: {n_pages} pages and {n_notebooks} notebooks searched for {n_lines} solution lines: "
          f"{len(problems)} leaks")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "_build/student"))
