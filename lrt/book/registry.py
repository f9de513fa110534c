"""A small name -> object registry with helpful errors (torchdiffeq's SOLVERS habit)."""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from lrt.core.errors import LrtError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise RuntimeError(f"{self.kind} {name!r} registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        _load_experiments()
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none)"
            raise LrtError(f"unknown {self.kind} {name!r}; expected one of: {valid}") from None

    def names(self) -> list[str]:
        _load_experiments()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        _load_experiments()
        return sorted(self._items.items())


#: Packages whose import registers claims, figures, runs and benchmarks (plugin discovery: the
#: book's machinery sits below the chapters and finds them by name, never by a static import).
PLUGINS = ["lrt.experiments"]


def _load_experiments() -> None:
    """Import the plugin packages (lrt.experiments imports every chapter module in it)."""
    for name in PLUGINS:
        importlib.import_module(name)


def decorator(registry: Registry, name: str, make: Callable[[Callable], T]) -> Callable[[Callable], Callable]:
    def wrap(fn: Callable) -> Callable:
        registry.add(name, make(fn))
        return fn

    return wrap
