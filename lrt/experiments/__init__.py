"""The book's experiments, one module per chapter (``chNN_name.py``).

Importing this package imports every module in it, in name order; each module registers its
claims (:func:`lrt.ledger.claim`), figures (:func:`lrt.figures.register_figure`), long runs and
benchmarks (:mod:`lrt.tasks`). Chapters import the module they need and call its functions.
"""

import importlib
import pkgutil

__all__: list[str] = []

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
