"""The book's machinery, not its mathematics: the ledger of checked claims, the figure registry,
long runs and benchmarks by name (``python -m lrt run|bench``), notebook execution, and the name
registry they share. Chapters register into it from :mod:`lrt.experiments`; the registries find the
experiments as plugins, by importing that package by name when first asked. Imports only
:mod:`lrt.core`. The ledger is the appendix page of the book.
"""
