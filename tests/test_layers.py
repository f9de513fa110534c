"""The package's architecture, checked: imports inside lrt flow one way, from the book and the
experiments through the public API to the implementation, and no two modules import each other.

Every ``import``/``from … import`` in every module is read (module level and inside functions).
The one sanctioned exception is plugin discovery: the registries of :mod:`lrt.book` find the
chapters' experiments with ``importlib.import_module`` by name, which this test does not see.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lrt"

#: Layer of each part, lowest first; a module may import its own layer's parts only within its own
#: part (subpackage), and any lower layer.
LAYERS = {
    "lrt.core": 0,
    "lrt.diagonal": 1,
    "lrt.transformers": 1,
    "lrt.p2": 1,
    "lrt.book": 2,
    "lrt": 3,  # the public API: lrt/__init__.py
    "lrt.experiments": 4,
    "lrt.cli": 5,
    "lrt.__main__": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part(module: str) -> str:
    """The part a module belongs to: the longest key of LAYERS that prefixes it."""
    if module == "lrt":
        return "lrt"
    candidates = [p for p in LAYERS if p != "lrt" and (module == p or module.startswith(p + "."))]
    return max(candidates, key=len) if candidates else "lrt"


def imports(path: Path) -> set[str]:
    """Modules of lrt that a file imports (resolving ``from lrt.x import y`` to lrt.x.y when y is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "lrt"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "lrt":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    PACKAGE.parent / Path(*sub.split(".")) / "__init__.py"
                ).exists()
                found.add(sub if is_module else node.module)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imports(path) & set(MODULES) for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert {part(m) for m in MODULES} <= set(LAYERS)
    assert len(MODULES) > 20


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    here = part(module)
    for target in GRAPH[module]:
        there = part(target)
        if there == here:
            continue
        assert LAYERS[there] < LAYERS[here], f"{module} (layer {here}) imports {target} (layer {there}): imports must point down"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_the_package_root_except_from_above():
    """The implementation never reaches for ``lrt`` itself (which would make it depend on everything)."""
    for module, targets in GRAPH.items():
        if LAYERS[part(module)] < LAYERS["lrt"]:
            assert "lrt" not in targets, f"{module} imports the package root"


def test_the_checks_detect_a_violation(tmp_path):
    """The test can fail: an upward import and a two-module cycle are both caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from lrt.book.ledger import claim\nimport lrt.experiments\n")
    ups = [t for t in imports(bad) if LAYERS[part(t)] > LAYERS["lrt.diagonal"]]
    assert set(ups) == {"lrt.book.ledger", "lrt.experiments"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", sorted(p for p in LAYERS if p != "lrt" and (PACKAGE.parent / Path(*p.split("."))).is_dir()))
def test_each_part_says_what_lives_there(package):
    """Each subpackage opens with a paragraph saying what lives there and which chapter derives it."""
    doc = ast.get_docstring(ast.parse((PACKAGE.parent / Path(*package.split(".")) / "__init__.py").read_text()))
    assert doc and len(doc) > 150 and "chapter" in doc.lower(), package
