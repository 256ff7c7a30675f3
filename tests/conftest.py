"""Fixtures shared by the book-level tests: one strict build of the HTML book per session.

The strict-build test (tests/test_book.py) and the browser test (tests/test_browser.py) both
use it, so the book is built once. The build goes to pytest's temporary folder, never to the
repository's _build: `<basetemp>/book/_build/html` (pytest prints nothing about it; with
`--basetemp DIR` it is `DIR/book/_build/html`, otherwise the newest run is reachable as
/tmp/pytest-of-$USER/pytest-current/book/_build/html).
"""

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BookBuild:
    build: Path  # the _build folder: html/ is the book, the browser test adds screenshots/
    returncode: int
    log: str  # stdout and stderr of `jupyter-book build`

    @property
    def html(self) -> Path:
        return self.build / "html"


@pytest.fixture(scope="session")
def book_build(request, tmp_path_factory) -> BookBuild:
    """`jupyter-book build . -W -n --keep-going`, once per session; the tests judge the result."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:  # make sure .pytest_cache (with its README.md) exists, as it will
        cache.set("book/build", True)  # for a reader who builds after running the tests
    out = tmp_path_factory.mktemp("book", numbered=False)
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    result = subprocess.run(
        [jb, "build", ".", "-W", "-n", "--keep-going", "--path-output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return BookBuild(out / "_build", result.returncode, result.stdout + result.stderr)
