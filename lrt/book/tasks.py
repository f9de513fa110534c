"""Long runs (``python -m lrt run NAME``) and benchmarks (``python -m lrt bench NAME``) by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lrt.book.registry import Registry

__all__ = ["LongRun", "Benchmark", "register_run", "register_benchmark", "runs", "benchmarks"]


@dataclass(frozen=True)
class LongRun:
    """A long experiment that writes a small committed results file.

    ``fn(steps: int | None, out: Path | None, progress: bool) -> Path`` returns the file written.
    """

    name: str
    chapter: str
    description: str
    fn: Callable


@dataclass(frozen=True)
class Benchmark:
    """A side-by-side timing. ``fn(quick: bool) -> dict`` returns at least ``{"ratios": {...}}``."""

    name: str
    chapter: str
    description: str
    fn: Callable


_RUNS: Registry[LongRun] = Registry("run")
_BENCHES: Registry[Benchmark] = Registry("benchmark")


def register_run(name: str, *, chapter: str, description: str):
    def wrap(fn):
        _RUNS.add(name, LongRun(name, chapter, description, fn))
        return fn

    return wrap


def register_benchmark(name: str, *, chapter: str, description: str):
    def wrap(fn):
        _BENCHES.add(name, Benchmark(name, chapter, description, fn))
        return fn

    return wrap


def runs() -> Registry[LongRun]:
    return _RUNS


def benchmarks() -> Registry[Benchmark]:
    return _BENCHES
