"""``python -m lrt.book.execute NOTEBOOK...``: re-execute notebooks in place (``make execute``).

Like ``jupyter execute --inplace``, but records no execution timestamps, so re-executing an
unchanged chapter on the same machine (same CPU kernels, one thread) leaves its file byte-for-byte
unchanged; on another CPU the last bits of float64 results may differ, which is why the book prints
only digits those bits cannot change (lrt.core.formatting).
"""

import sys

import nbformat
from nbclient import NotebookClient


def execute(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False).execute()
    nbformat.write(nb, path)


if __name__ == "__main__":
    for notebook in sys.argv[1:]:
        print(f"executing {notebook}", flush=True)
        execute(notebook)
