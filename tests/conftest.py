"""Fixtures shared by the tests; each has its home here, and no test file copies one.

(Chapter 4 writes its own small crashing loader in its page, for the reader to see; the tests
use the `crash` fixture below.)

The book-level tests share one strict build of the HTML book per session (below); the
training tests share tiny data, a tiny model and a crashing loader (further below).

The strict-build test (tests/test_book.py) and the browser test (tests/test_browser.py) both
use it, so the book is built once. The build goes to pytest's temporary folder, never to the
repository's _build: `<basetemp>/book/_build/html` (pytest prints nothing about it; with
`--basetemp DIR` it is `DIR/book/_build/html`, otherwise the newest run is reachable as
/tmp/pytest-of-$USER/pytest-current/book/_build/html).
"""

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers.models import SmallCNN

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


# ---- Training fixtures: tiny data and models shared by the training, EMA, speed and DDP tests --


def make_quadrant_data(n: int, seed: int) -> TensorDataset:
    """Label j is on when quadrant j of a 16x16 image holds a bright square: learnable fast."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, 4, generator=g) < 0.4).float()
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.3
    for j, (r, c) in enumerate([(0, 0), (0, 8), (8, 0), (8, 8)]):
        x[y[:, j] == 1, :, r + 2 : r + 6, c + 2 : c + 6] += 0.7
    return TensorDataset(x, y)


@pytest.fixture(scope="session")
def quadrant_data():
    """``quadrant_data(n, seed)``: a TensorDataset of n images with 4 labels (see above)."""
    return make_quadrant_data


@pytest.fixture(scope="session")
def quadrant_loaders():
    """``quadrant_loaders(batch_size=32)``: 256 shuffled training images, 128 validation."""

    def loaders(batch_size: int = 32) -> tuple[DataLoader, DataLoader]:
        train = DataLoader(make_quadrant_data(256, 0), batch_size=batch_size, shuffle=True)
        return train, DataLoader(make_quadrant_data(128, 1), batch_size=64)

    return loaders


@pytest.fixture(scope="session")
def new_model():
    """``new_model()``: the same freshly initialised SmallCNN(n_labels=4, width=8) every call."""

    def make() -> nn.Module:
        torch.manual_seed(0)
        return SmallCNN(n_labels=4, width=8)

    return make


class Interrupt(Exception):
    """What an `interrupted` loader raises: a crash or a Ctrl-C partway through a run."""


@dataclass
class Crash:
    error: type[Exception]
    loader: Callable  # loader(real_loader, at_batch) -> a loader that raises in its second pass


def interrupted(loader, at_batch: int):
    """A loader that raises `Interrupt` at batch `at_batch` of its second pass."""

    class Wrapped:
        passes = 0

        def __len__(self):
            return len(loader)

        def __iter__(self):
            Wrapped.passes += 1
            for i, batch in enumerate(loader):
                if Wrapped.passes == 2 and i == at_batch:
                    raise Interrupt
                yield batch

    return Wrapped()


@pytest.fixture(scope="session")
def crash() -> Crash:
    """``crash.loader(loader, at_batch)`` raises ``crash.error`` in epoch 2, like a crash."""
    return Crash(Interrupt, interrupted)
