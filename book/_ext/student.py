"""The student edition: the book's sources with every exercise solution removed.

``python book/_ext/student.py OUT`` copies the book's sources (``_config.yml``, ``_toc.yml``,
``references.bib``, ``_static/``, ``book/``) into ``OUT`` and removes from every notebook and page

- every gated solution, from its ```` ```{solution-start} ```` fence to its ```` ```{solution-end} ````
  fence: the markdown between them and every code cell (with its outputs) in between;
- every plain ``{solution}`` directive.

The exercises stay. ``make student`` then builds ``OUT`` into ``_build/student/html`` and copies the
stripped notebooks to ``_build/student/notebooks``; ``tests/check_student.py`` proves that no solution
text reached either.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = r"(?P<fence>`{3,}|:{3,})"
START = re.compile(FENCE + r"\{solution-start\}[^\n]*\n(?:[^\n]*\n)*?(?P=fence)[ \t]*(?:\n|$)")
END = re.compile(FENCE + r"\{solution-end\}[^\n]*\n(?:[^\n]*\n)*?(?P=fence)[ \t]*(?:\n|$)")
PLAIN = re.compile(FENCE + r"\{solution\}[^\n]*\n.*?\n(?P=fence)[ \t]*(?:\n|$)", re.S)


class SolutionError(ValueError):
    """A solution-start without its solution-end (or the reverse): the edition would leak or lose text."""


def strip_text(text: str, in_solution: bool) -> tuple[str, str, bool]:
    """(kept, removed, still in a solution) for one markdown text."""
    kept, removed, pos = [], [], 0
    markers = sorted([(m.start(), m.end(), "start") for m in START.finditer(text)]
                     + [(m.start(), m.end(), "end") for m in END.finditer(text)])
    for start, end, kind in markers:
        if kind == "start":
            if in_solution:
                raise SolutionError("solution-start inside a solution")
            kept.append(text[pos:start])
            in_solution, pos = True, start
        else:
            if not in_solution:
                raise SolutionError("solution-end without a solution-start")
            removed.append(text[pos:end])
            in_solution, pos = False, end
    (removed if in_solution else kept).append(text[pos:])
    kept_text = "".join(kept)
    for m in PLAIN.finditer(kept_text):
        removed.append(m.group(0))
    kept_text = PLAIN.sub("", kept_text)
    return kept_text, "".join(removed), in_solution


def strip_notebook(nb: dict) -> tuple[dict, list[str]]:
    """The notebook without its solutions, and the removed texts (markdown, code and outputs)."""
    out = copy.deepcopy(nb)
    cells, removed, in_solution = [], [], False
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            kept, gone, in_solution = strip_text(source, in_solution)
            if gone:
                removed.append(gone)
            if kept.strip():
                new = copy.deepcopy(cell)
                new["source"] = kept.strip("\n") + "\n" if kept.strip() else ""
                new["source"] = new["source"].rstrip("\n")
                cells.append(new)
        elif in_solution:
            removed.append(source)
            for o in cell.get("outputs", []):
                text = o.get("data", {}).get("text/plain", o.get("text", ""))
                removed.append("".join(text) if isinstance(text, list) else text)
        else:
            cells.append(copy.deepcopy(cell))
    if in_solution:
        raise SolutionError("a solution-start without its solution-end")
    out["cells"] = cells
    return out, removed


def solution_count(nb: dict) -> int:
    return sum(len(START.findall("".join(c["source"]))) + len(PLAIN.findall("".join(c["source"])))
               for c in nb["cells"] if c["cell_type"] == "markdown")


def make_sources(out: Path) -> dict[str, list[str]]:
    """Write the student sources into ``out``; return the removed texts per notebook."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("_toc.yml", "references.bib"):
        shutil.copy2(ROOT / name, out / name)
    config = (ROOT / "_config.yml").read_text(encoding="utf-8")
    config = re.sub(r"^title: (.*)$", r"title: \1 (student edition)", config, count=1, flags=re.M)
    # the MathJax copy of the instructor build, not a second one
    config = config.replace('html_extra_path: ["_mathjax_extra"]', f'html_extra_path: ["{ROOT / "_mathjax_extra"}"]')
    config = config.replace("  config:\n", "  config:\n    lrt_edition: student\n", 1)
    (out / "_config.yml").write_text(config, encoding="utf-8")
    if (ROOT / "_static").exists():
        shutil.copytree(ROOT / "_static", out / "_static")
    shutil.copytree(ROOT / "book", out / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    removed = {}
    for path in sorted((out / "book").rglob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        stripped, gone = strip_notebook(nb)
        path.write_text(json.dumps(stripped, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        removed[str(path.relative_to(out))] = gone
    for path in sorted((out / "book").rglob("*.md")):
        kept, gone, open_solution = strip_text(path.read_text(encoding="utf-8"), False)
        if open_solution:
            raise SolutionError(f"{path}: a solution-start without its solution-end")
        path.write_text(kept, encoding="utf-8")
        if gone:
            removed[str(path.relative_to(out))] = [gone]
    return removed


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/student-src")
    removed = make_sources(target)
    print(f"student sources in {target}: {sum(len(v) > 0 for v in removed.values())} files had solutions, "
          f"{sum(len(v) for v in removed.values())} solution parts removed")
