"""The book's Sphinx extension: pages generated from the package and from the executed chapters.

It lives in ``book/_ext`` (a local extension, see ``_config.yml``), outside the package, which it only
reads: it sits above every layer of ``lrt``.

Nothing here measures anything. At build time it only reads what is committed:

- ``{lrt-ledger}``: the ledger page, from the claim registry (statement, prediction, tolerance) and
  the measurements the executed chapters display (``lrt.check(...)`` outputs, which strict nbval
  re-checks), with a link to each chapter;
- ``{lrt-api}``: the library pages, one section per chapter, from the docstrings (autodoc): the public
  functions the chapter derives, then its experiments module, each with the chapters that call it;
- ``{lrt-results}``: the index of the book's definitions, theorems and algorithms, by title;
- ``{lrt-syllabus}``: sessions -> chapters, with each chapter's "Chapter at a glance" and exercises;
- ``{only} student`` / ``{only} instructor``: the edition (config ``lrt_edition``, set by make student);
- a section "Functions used in this chapter" at the end of every chapter, linking the API entries of
  the ``lrt`` functions its code cells call.

Chapters are the notebooks under ``book/`` whose first cell starts with a ``(ch-...)=`` label.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx import addnodes

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
#: namespaces whose ``__all__`` is the public API
NAMESPACES = ("lrt", "lrt.p2")
#: what ``lrt.check(id)`` displays: ``P1.conservation [pass] measured 6.37e-12 (tolerance: ...); detail``
CHECK_LINE = re.compile(r"^(?P<id>P\d\.\w+) \[(?P<verdict>[^\]]+)\] measured (?P<value>\S+?)(?: \(tolerance: |$)")
#: the admonition every chapter opens with (tests/test_book.py checks its form)
GLANCE = re.compile(
    r":::\{admonition\} Chapter at a glance\n:class: tip\n"
    r"\*\*Objectives\.\*\* (?P<objectives>.+?)\n"
    r"\*\*Prerequisites\.\*\* (?P<prerequisites>.+?)\n"
    r"\*\*Time\.\*\* about (?P<reading>\d+) min reading, (?P<running>\d+) min running\.\n:::",
    re.S,
)
DEFINED_IN = re.compile(r"Defined in :ref:`([\w-]+)`")


# ----------------------------------------------------------------------------- reading the chapters


@dataclass
class Chapter:
    label: str
    path: Path
    title: str
    docname: str
    code: str
    outputs: list[str] = field(default_factory=list)
    markdown: str = ""

    @property
    def glance(self) -> dict | None:
        """The chapter's "Chapter at a glance" admonition: objectives, prerequisites, minutes."""
        m = GLANCE.search(self.markdown)
        return m.groupdict() if m else None

    @property
    def exercises(self) -> list[str]:
        return re.findall(r"[:`]{3,}\{exercise\}[^\n]*\n(?::[^\n]*\n)*?:label: ([\w-]+)", self.markdown)


@functools.lru_cache(maxsize=None)
def chapters() -> tuple[Chapter, ...]:
    """The chapters in book order (part folder, then file name)."""
    found = []
    for path in sorted(BOOK.glob("part*/*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
        first = "".join(cells[0]["source"]) if cells else ""
        label = re.match(r"\s*\(([\w-]+)\)=", first)
        title = re.search(r"^# (.+)$", first, re.M)
        if not label or not title:
            continue
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        outputs = []
        for c in cells:
            for out in c.get("outputs", []):
                text = out.get("data", {}).get("text/plain", out.get("text", ""))
                outputs.append("".join(text) if isinstance(text, list) else text)
        docname = path.relative_to(ROOT).with_suffix("").as_posix()
        markdown = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        found.append(Chapter(label.group(1), path, title.group(1).strip(), docname, code, outputs, markdown))
    return tuple(found)


def chapter_by_label() -> dict[str, Chapter]:
    return {c.label: c for c in chapters()}


def recorded_measurements() -> dict[str, dict]:
    """Claim id -> what its chapter displays: verdict, measured value, detail, chapter label."""
    found = {}
    for ch in chapters():
        for text in ch.outputs:
            for line in text.splitlines():
                m = CHECK_LINE.match(line)
                if m:
                    detail = line.split("); ", 1)[1] if "); " in line else ""
                    found[m["id"]] = {"verdict": m["verdict"], "measured": m["value"], "detail": detail, "shown_in": ch.label}
    return found


# ----------------------------------------------------------------------------- the public API


def _defined_here(module: str, obj) -> bool:
    return getattr(obj, "__module__", None) == module


@functools.lru_cache(maxsize=None)
def api_entries() -> dict[str, tuple[str, object, str | None]]:
    """Full name -> (kind, object, chapter label): the public API and the experiments modules."""
    entries = {}
    for ns in NAMESPACES:
        mod = importlib.import_module(ns)
        for name in mod.__all__:
            obj = getattr(mod, name)
            entries[f"{ns}.{name}"] = (_kind(obj), obj, _chapter_of(obj))
    import lrt.experiments  # noqa: F401  (imports every module)

    for info in sorted(Path(lrt_experiments_dir()).glob("ch*.py")):
        modname = f"lrt.experiments.{info.stem}"
        mod = importlib.import_module(modname)
        label = getattr(mod, "CHAPTER", None)
        for name, obj in vars(mod).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if _defined_here(modname, obj):
                entries[f"{modname}.{name}"] = (_kind(obj), obj, label)
    return entries


def lrt_experiments_dir() -> Path:
    import lrt.experiments

    return Path(lrt.experiments.__file__).parent


def _kind(obj) -> str:
    if inspect.isclass(obj):
        return "class"
    return "function"


def _chapter_of(obj) -> str | None:
    m = DEFINED_IN.search(inspect.getdoc(obj) or "")
    return m.group(1) if m else None


def used_names(chapter: Chapter) -> list[str]:
    """The API entries a chapter's code cells call (``lrt.X``, ``p2.X``, ``ch03.X`` after ``import ... as ch03``)."""
    aliases = {"lrt": "lrt"}
    for mod, alias in re.findall(r"^from lrt\.experiments import (\w+) as (\w+)", chapter.code, re.M):
        aliases[alias] = f"lrt.experiments.{mod}"
    for mod in re.findall(r"^from lrt import (p2)\b", chapter.code, re.M):
        aliases["p2"] = "lrt.p2"
    entries = api_entries()
    used = []
    for alias, full in aliases.items():
        for name in re.findall(rf"(?<![\w.]){alias}\.(?:(p2)\.)?(\w+)", chapter.code):
            sub, attr = name
            target = f"{full}.p2.{attr}" if sub else f"{full}.{attr}"
            if target in entries and target not in used:
                used.append(target)
    return sorted(used, key=lambda n: (n.count("."), n.lower()))


def users_of(target: str) -> list[Chapter]:
    return [c for c in chapters() if target in used_names(c)]


# ----------------------------------------------------------------------------- directives


class _MystDirective(Directive):
    """A directive that writes MyST text and parses it in place."""

    has_content = False

    def text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def run(self):
        container = nodes.container()
        self.state.nested_parse(self.text().splitlines(), self.content_offset, container)
        return container.children


class LedgerDirective(_MystDirective):
    def text(self) -> str:
        from lrt import claims

        recorded = recorded_measurements()
        by_label = chapter_by_label()
        extra_fields = [f.name for f in dataclasses.fields(claims()[0]) if f.name not in
                        ("id", "chapter", "statement", "prediction", "tolerance", "measure")]
        rows, details = [], []
        for c in claims():
            r = recorded.get(c.id)
            chapter = f"{{ref}}`{c.chapter}`" if c.chapter in by_label else c.chapter
            verdict = r["verdict"] if r else "not shown in a chapter"
            measured = f"`{r['measured']}`" if r else "—"
            anchor = "ledger-" + c.id.lower().replace(".", "-").replace("_", "-")
            rows.append(f"* - [`{c.id}`](#{anchor})\n  - {chapter}\n  - {measured}\n  - {verdict}")
            items = [
                ("Chapter", chapter),
                ("Statement", c.statement),
                ("Prediction", c.prediction),
                ("Tolerance", c.tolerance),
            ]
            for name in extra_fields:
                items.append((name.replace("_", " ").capitalize(), str(getattr(c, name))))
            items.append(("Measured", f"`{r['measured']}`" + (f" ({r['detail']})" if r and r["detail"] else "") if r else "—"))
            items.append(("Status", verdict))
            body = "\n".join(f"- **{k}.** {v}" for k, v in items)
            details.append(f"({anchor})=\n**`{c.id}`** ({verdict})\n\n{body}\n")
        table = (
            ":::{list-table} Every claim, its chapter, the value the chapter measured, and the verdict\n"
            ":header-rows: 1\n:class: lrt-ledger\n\n* - Claim\n  - Chapter\n  - Measured\n  - Status\n"
            + "\n".join(rows) + "\n:::\n"
        )
        return table + "\n" + "\n".join(details)


class ApiDirective(Directive):
    """One section per chapter: the public functions it derives, its experiments module."""

    has_content = False

    def run(self):
        entries = api_entries()
        sections = []
        groups: dict[str | None, list[str]] = {}
        for full, (_, _, label) in entries.items():
            groups.setdefault(label if label in chapter_by_label() else None, []).append(full)
        for number, ch in enumerate(chapters(), 1):
            names = groups.get(ch.label, [])
            if not names:
                continue
            sections.append(self._section(f"Chapter {number}: {ch.title}", f"api-{ch.label}", self._chapter_text(ch, names)))
        if groups.get(None):
            sections.append(self._section("Errors and other names", "api-other", self._entries_text(groups[None])))
        return sections

    def _section(self, title: str, ident: str, text: str):
        section = nodes.section(ids=[ident], names=[ident])
        section += nodes.title(title, title)
        self.state.document.note_implicit_target(section)
        container = nodes.container()
        self.state.nested_parse(text.splitlines(), self.content_offset, container)
        section.extend(container.children)
        return section

    def _chapter_text(self, ch: Chapter, names: list[str]) -> str:
        public = [n for n in names if not n.startswith("lrt.experiments.")]
        experiments = [n for n in names if n.startswith("lrt.experiments.")]
        text = f"Derived in {{ref}}`{ch.label}`.\n\n"
        if public:
            text += self._entries_text(public)
        if experiments:
            module = experiments[0].rsplit(".", 1)[0]
            text += (f"\n**The chapter's experiments** (`{module}`): the chapter calls these; "
                     "they call the library above.\n\n" + self._entries_text(experiments))
        return text

    def _entries_text(self, names: list[str]) -> str:
        out = []
        for full in names:
            kind, obj, label = api_entries()[full]
            users = [c for c in users_of(full)]
            used = ", ".join(f"{{ref}}`{c.label}`" for c in users) if users else "no chapter directly"
            options = "   :members:\n" if kind == "class" and not dataclasses.is_dataclass(obj) else ""
            out.append(f"```{{eval-rst}}\n.. auto{kind}:: {full}\n{options}```\n\n*Used in:* {used}.\n")
        return "\n".join(out)


class SyllabusDirective(Directive):
    """Sessions -> chapters, with each chapter's objectives, prerequisites and time (from its
    "Chapter at a glance"), and its exercises. Content: one line per session, ``Title | ch-a ch-b``."""

    has_content = True

    def run(self):
        by_label = chapter_by_label()
        sections = []
        for n, line in enumerate(l for l in self.content if l.strip()):
            title, _, labels = line.partition("|")
            chs = [by_label[label] for label in labels.split()]
            text = self._session_text(chs)
            section = nodes.section(ids=[f"session-{n + 1}"], names=[f"session {n + 1}"])
            section += nodes.title(title.strip(), title.strip())
            self.state.document.note_implicit_target(section)
            container = nodes.container()
            self.state.nested_parse(text.splitlines(), self.content_offset, container)
            section.extend(container.children)
            sections.append(section)
        return sections

    @staticmethod
    def _session_text(chs: list[Chapter]) -> str:
        glances = [c.glance for c in chs]
        lines = ["- **Chapters.** " + ", ".join(f"{{ref}}`{c.label}`" for c in chs)]
        if all(glances):
            reading = sum(int(g["reading"]) for g in glances)
            running = sum(int(g["running"]) for g in glances)
            lines.append(f"- **Time.** about {reading} min reading and {running} min running the chapters"
                         + (" (" + "; ".join(f"chapter {chapters().index(c) + 1}: {g['reading']} + {g['running']} min" for c, g in zip(chs, glances)) + ")" if len(chs) > 1 else ""))
        else:
            lines.append("- **Time.** see each chapter's opening")
        for c, g in zip(chs, glances):
            if g:
                lines.append(f"- **Objectives ({{ref}}`{c.label}`).** " + " ".join(g["objectives"].split()))
                lines.append(f"- **Prerequisites ({{ref}}`{c.label}`).** " + " ".join(g["prerequisites"].split()))
        exercises = [e for c in chs for e in c.exercises]
        if exercises:
            lines.append("- **Exercises to assign.** " + ", ".join(f"{{ref}}`{e}`" for e in exercises)
                         + " (solutions are in the instructor edition only)")
        return "\n".join(lines) + "\n"


class results_index(nodes.General, nodes.Element):
    """Placeholder for the index of results, filled once every page has been read."""


class ResultsDirective(Directive):
    has_content = False

    def run(self):
        return [results_index("")]


# ----------------------------------------------------------------------------- events


def _collect_results(app, doctree):
    """Remember the title of every definition, theorem, algorithm ... (sphinx-proof's index has only labels)."""
    env = app.env
    if not hasattr(env, "lrt_results"):
        env.lrt_results = {}
    for node in doctree.findall(nodes.Element):
        if "realtype" in node.attributes and node.get("label") and node.get("ids"):
            title_node = next(iter(node.findall(nodes.title)), None)
            title = title_node.astext() if title_node is not None else node.get("title") or node["label"]
            title = re.sub(r"\{[\w:-]+\}`([^`]*)`", r"\1", title).strip() or node["label"]
            env.lrt_results[node["label"]] = {
                "docname": env.docname, "id": node["ids"][0], "type": node["realtype"], "title": title,
            }


def _add_functions_used(app, doctree):
    """Append 'Functions used in this chapter' to every chapter: links to the API entries it calls."""
    docname = app.env.docname
    chapter = next((c for c in chapters() if c.docname == docname), None)
    if chapter is None or not app.config.lrt_functions_used:
        return
    names = used_names(chapter)
    top = next(iter(doctree.findall(nodes.section)), None)
    if top is None or not names:
        return
    section = nodes.section(ids=["functions-used-in-this-chapter"], names=["functions used in this chapter"])
    section += nodes.title("Functions used in this chapter", "Functions used in this chapter")
    para = nodes.paragraph()
    para += nodes.Text("This chapter calls these functions of the lrt package (each links to its entry on the API pages): ")
    for i, full in enumerate(names):
        if i:
            para += nodes.Text(", ")
        kind = api_entries()[full][0]
        ref = addnodes.pending_xref(
            "", nodes.literal(full, full, classes=["xref", "py", f"py-{'class' if kind == 'class' else 'func'}"]),
            refdomain="py", reftype="class" if kind == "class" else "func", reftarget=full,
            refexplicit=True, refwarn=True, refdoc=docname,
        )
        para += ref
    para += nodes.Text(".")
    section += para
    top += section


_INLINE_LITERAL = re.compile(r"(``.+?``|`[^`]+`)")


def _escape_bars(app, what, name, obj, options, lines):
    """Docstrings write absolute values as ``|w_i|``; reStructuredText would read a substitution."""
    in_doctest = False
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith((">>>", "...")):
            in_doctest = True
        elif not stripped:
            in_doctest = False
        if in_doctest or "|" not in line:
            continue
        parts = _INLINE_LITERAL.split(line)
        lines[i] = "".join(p if j % 2 else p.replace("|", r"\|") for j, p in enumerate(parts))


def _documented_names() -> dict[int, str]:
    return {id(obj): full for full, (_, obj, _) in api_entries().items()}


def _resolve_object(target: str, module: str | None):
    """The Python object a reference names (absolute, or relative to the module being documented)."""
    for candidate in ([f"{module}.{target}"] if module else []) + [target]:
        parts = candidate.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            return obj
    return None


def _contexts(node) -> list[str | None]:
    """Where a name in a docstring may live: the documented object's own module and classes (with their
    bases: an inherited docstring names its class's neighbours), then the page's module, then nowhere."""
    contexts = []
    documented = re.search(r"docstring of ([\w.]+)", node.source or "")
    if documented:
        parts = documented.group(1).split(".")
        for cut in range(len(parts) - 1, 0, -1):
            owner = _resolve_object(".".join(parts[:cut]), None)
            if owner is None:
                continue
            contexts.append(".".join(parts[:cut]))
            if inspect.isclass(owner):
                contexts += [f"{base.__module__}.{base.__qualname__}" for base in owner.__mro__[1:]]
                contexts += [base.__module__ for base in owner.__mro__]
    if node.get("py:class"):
        contexts.append(f"{node.get('py:module')}.{node.get('py:class')}")
    contexts += [node.get("py:module"), None]
    return contexts


def _missing_reference(app, env, node, contnode):
    """Docstring references that Sphinx cannot resolve by name.

    - an lrt object documented under another name (``lrt.tracking.train`` is ``lrt.train``): link to it;
    - an lrt module constant or helper without a page (``FLOW_METHODS``), or a class of another library
      (``torch.Tensor``; the book is offline, so no intersphinx): plain text, no link.
    Anything else (a name that does not exist) stays a warning, which fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    obj = None
    for context in _contexts(node):
        obj = _resolve_object(target, context)
        if obj is not None:
            break
    if obj is None and target.startswith("lrt.") and f"lrt.{target.rsplit('.', 1)[-1]}" in api_entries():
        # a path from before the package's layout (lrt.algorithm1.Staircase): the public name still exists
        obj = api_entries()[f"lrt.{target.rsplit('.', 1)[-1]}"][1]
    if obj is None:
        return None
    full = _documented_names().get(id(obj))
    if full and full != target:
        domain = env.get_domain("py")
        for role in ("func", "class", "obj"):
            ref = domain.resolve_xref(env, node["refdoc"], app.builder, role, full, node, contnode)
            if ref is not None:
                return ref
    return contnode


def _purge(app, env, docname):
    if hasattr(env, "lrt_results"):
        env.lrt_results = {k: v for k, v in env.lrt_results.items() if v["docname"] != docname}


def _merge(app, env, docnames, other):
    env.lrt_results = {**getattr(env, "lrt_results", {}), **getattr(other, "lrt_results", {})}


def _fill_results(app, doctree, fromdocname):
    results = getattr(app.env, "lrt_results", {})
    order = {c.docname: i for i, c in enumerate(chapters())}
    for node in list(doctree.findall(results_index)):
        table = nodes.bullet_list()
        for label, r in sorted(results.items(), key=lambda kv: (order.get(kv[1]["docname"], 99), kv[0])):
            uri = app.builder.get_relative_uri(fromdocname, r["docname"]) + "#" + r["id"]
            item = nodes.list_item()
            para = nodes.paragraph()
            para += nodes.strong(r["type"].capitalize(), r["type"].capitalize())
            para += nodes.Text(" ")
            para += nodes.reference("", r["title"], refuri=uri)
            ch = next((c for c in chapters() if c.docname == r["docname"]), None)
            if ch:
                para += nodes.Text(f" — {ch.title}")
            item += para
            table += item
        node.replace_self(table)


def _edition_tag(app, config):
    """``{only} student`` / ``{only} instructor`` blocks: the edition is a config value (make student sets it)."""
    app.tags.add(config.lrt_edition)


def setup(app):
    app.add_config_value("lrt_functions_used", True, "env")
    app.add_config_value("lrt_edition", "instructor", "env")
    app.connect("config-inited", _edition_tag)
    app.add_directive("lrt-ledger", LedgerDirective)
    app.add_directive("lrt-api", ApiDirective)
    app.add_directive("lrt-results", ResultsDirective)
    app.add_directive("lrt-syllabus", SyllabusDirective)
    app.add_node(results_index)
    # before the toc collector (priority 500), so the section appears in the page's contents
    app.connect("doctree-read", _add_functions_used, priority=400)
    app.connect("doctree-read", _collect_results)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("doctree-resolved", _fill_results)
    app.connect("autodoc-process-docstring", _escape_bars)
    app.connect("missing-reference", _missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
