"""Execute chapters in place (full mode unless BOOK_QUICK=1) so their stored outputs are current.

    python scripts/execute_notebooks.py book/02_blog_post_fixed.ipynb [more.ipynb ...]

Runs each notebook top to bottom with ``book/`` as the working directory, as readers do,
and prints how long it took. Cells tagged ``raises-exception`` may fail; any other error
stops with the notebook unchanged on disk.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:  # keep diffs small: no per-cell timestamps
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return seconds


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: executed in {execute(Path(name)):.1f} s", flush=True)
