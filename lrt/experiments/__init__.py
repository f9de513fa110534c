"""The book's experiments, one module per chapter (``chNN_name.py``).

Importing this package imports every module in it, in name order; each module registers its
claims (:func:`lrt.book.ledger.claim`), figures (:func:`lrt.book.figures.register_figure`), long
runs and benchmarks (:mod:`lrt.book.tasks`). Chapter N's notebook imports ``chNN_*`` and calls its
functions; the modules call the public API (``lrt``, ``lrt.p2``) and :mod:`lrt.book`, never the
implementation directly.
"""

import importlib
import pkgutil

__all__: list[str] = []

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
