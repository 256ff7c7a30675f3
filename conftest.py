"""Test-suite settings shared by the unit tests and the notebook checks (nbval).

One mode: every chapter runs its real budget and nbval compares every cell with the stored
output (``tests/nbval_sanitize.cfg`` masks only what changes between identical runs).

The kernels that nbval starts inherit this process's environment, so the pins of
``helpers.env.PINNED_ENV`` are set here, before any kernel (or torch) starts: AVX2 kernels,
one thread, the bundled digits and no downloads. The stored outputs were made under the
same pins (``scripts/execute_notebooks.py``), which is what lets them reproduce on any
x86-64 CPU with AVX2.

Every notebook cell under book/ carries the ``slow`` marker, so ``pytest -m "not slow"`` is
the quick loop over the unit tests.
"""

import os
from pathlib import Path

import pytest

from helpers.pins import PINNED_ENV

os.environ.update(PINNED_ENV)  # before torch is imported by anything below

BOOK = Path(__file__).resolve().parent / "book"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb" and BOOK in item.path.parents:
            item.add_marker(pytest.mark.slow)
