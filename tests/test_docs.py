"""Docstring examples run (doctest), and every public function names a chapter that exists."""

import dataclasses
import doctest
import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import pytest

import lrt
import lrt.p2

ROOT = Path(__file__).resolve().parents[1]
#: every module of the package (its doctests run), but the entry point
MODULES = sorted(m.name for m in pkgutil.walk_packages(lrt.__path__, "lrt.") if m.name != "lrt.__main__")
#: namespaces whose ``__all__`` is public API: ``lrt`` itself and the parts kept in sub-namespaces
NAMESPACES = [lrt, lrt.p2]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    # the package's names are available to examples, but never shadow the module's own (lrt.train is not lrt.p2.train)
    extra = {k: v for k, v in vars(lrt).items() if k not in vars(module)} | {"torch": __import__("torch")}
    result = doctest.testmod(module, extraglobs=extra, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def book_labels() -> set[str]:
    labels = set()
    for path in (ROOT / "book").rglob("*"):
        if path.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
        elif path.suffix == ".md":
            text = path.read_text()
        else:
            continue
        labels |= set(re.findall(r"^\(([\w-]+)\)=", text, re.M))
    return labels


def public_functions():
    for namespace in NAMESPACES:
        for name in namespace.__all__:
            obj = getattr(namespace, name)
            # data classes (Trajectory, Claim, ClaimResult) document their fields, not a derivation
            if inspect.isfunction(obj) or (inspect.isclass(obj) and not dataclasses.is_dataclass(obj) and name not in ("LrtError", "LrtTypeError")):
                yield f"{namespace.__name__}.{name}", obj


@pytest.mark.parametrize("name, obj", list(public_functions()))
def test_public_functions_name_an_existing_chapter(name, obj):
    doc = inspect.getdoc(obj) or ""
    match = re.search(r"Defined in :ref:`([\w-]+)`", doc)
    assert match, f"{name}: docstring does not end with 'Defined in :ref:`chapter-label`'"
    assert match.group(1) in book_labels(), f"{name}: chapter label {match.group(1)!r} not found in book/"
