"""Execute chapters in place under the pins, so their stored outputs are current and reproducible.

    python scripts/execute_notebooks.py book/02_blog_post_fixed.ipynb [more.ipynb ...]

Runs each notebook top to bottom with ``book/`` as the working directory, as readers do,
under ``helpers.pins.PINNED_ENV`` (AVX2 kernels, one thread, the bundled digits, no
downloads): the same pins under which CI compares every cell, whatever CPU either runs on.
Records the digest of what the chapter ran (``scripts/digest.py``) in its metadata and
prints the wall time and the CPU time of the kernel and its children. Cells tagged
``raises-exception`` may fail; any other error stops with the notebook unchanged on disk.
"""

import os
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.pins import PINNED_ENV  # noqa: E402 - the repository's, not an installed copy
from scripts.digest import digest  # noqa: E402


def cpu_seconds() -> float:
    """User + system time of the finished child processes (the kernel and what it started)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def execute(path: Path) -> tuple[float, float]:
    """Execute `path` in place; return (wall seconds, CPU seconds)."""
    nb = nbformat.read(path, as_version=4)
    start, cpu = time.perf_counter(), cpu_seconds()
    NotebookClient(
        nb,
        timeout=1800,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=False,  # the site shows snapshots; a widget lives only in a kernel
    ).execute()
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    nb.metadata.pop("widgets", None)  # no stored widget state: the site shows snapshots
    for cell in nb.cells:  # keep diffs small: no per-cell timestamps
        cell.metadata.pop("execution", None)
    nb.metadata.setdefault("book", {})["digest"] = digest(path.resolve())
    nbformat.write(nb, path)
    return seconds, cpu


if __name__ == "__main__":
    os.environ.update(PINNED_ENV)  # inherited by every kernel started below
    rows = []
    for name in sys.argv[1:]:
        wall, cpu = execute(Path(name))
        print(f"{name}: executed in {wall:.1f} s (CPU {cpu:.1f} s)", flush=True)
        rows.append((Path(name).stem, wall, cpu))
    if len(rows) > 1:  # the per-chapter table of CONTRIBUTING ("How long each chapter runs")
        print("\n| chapter | wall s | CPU s |\n|---|---|---|")
        for stem, wall, cpu in rows:
            print(f"| {stem} | {wall:.0f} | {cpu:.0f} |")
        total_wall, total_cpu = sum(r[1] for r in rows), sum(r[2] for r in rows)
        print(f"| all {len(rows)} | {total_wall:.0f} | {total_cpu:.0f} |")
