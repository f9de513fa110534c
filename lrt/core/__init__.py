"""The bottom layer, imported by every other: the error type (:mod:`lrt.core.errors`), input checks
(:mod:`lrt.core.checks`), reproducibility settings (:mod:`lrt.core.repro`), results files
(:mod:`lrt.core.results`) and the one rule for printing numbers (:mod:`lrt.core.formatting`).
Nothing here imports another part of lrt; chapter 1 sets up the reproducible environment that every
chapter uses.
"""
