"""Test-suite settings shared by the unit tests and the notebook checks (nbval).

The suite runs chapters in quick mode (BOOK_QUICK=1) unless told otherwise, so CI stays
fast. Stored outputs come from full runs; a cell whose numbers depend on the training
budget carries the tag ``quick-mode-differs``: in quick mode it is executed (it must not
fail) but its output is not compared. Every other cell is compared strictly.
``BOOK_QUICK=0 pytest book`` compares every cell against the full run.

Every notebook cell under book/ carries the ``slow`` marker (a chapter takes minutes to run),
so ``pytest -m "not slow"`` is the quick loop over the unit tests.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("BOOK_QUICK", "1")  # kernels started by nbval inherit this

QUICK_TAG = "quick-mode-differs"


BOOK = Path(__file__).resolve().parent / "book"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb" and BOOK in item.path.parents:
            item.add_marker(pytest.mark.slow)
    if os.environ["BOOK_QUICK"] != "1":
        return
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and QUICK_TAG in cell.get("metadata", {}).get("tags", []):
            item.options["check"] = False
