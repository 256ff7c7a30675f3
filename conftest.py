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


# CI's log sums the test time of each part of the suite (with two workers, wall time is
# about half the sum). A part is named by the test file or folder it comes from.
PARTS = {
    "book": "chapters (nbval, every cell compared)",
    "test_colab.py": "Colab simulation",
    "test_book.py": "book checks and strict build",
    "test_browser.py": "browser test",
    "test_pins.py": "pins",
}
_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    part = next((p for key, p in PARTS.items() if key in path.split("/")), "unit tests")
    _seconds[part] = _seconds.get(part, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if _seconds:
        terminalreporter.section("time per part (sum over workers)")
        for part, seconds in sorted(_seconds.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{part:<40} {seconds:8.0f} s")
