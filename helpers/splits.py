"""Train/validation/test splits that keep rare labels in every part.

A random split of a long-tailed multi-label data set can leave a rare label with no
validation or test images at all, and then its score cannot be measured. *Iterative
stratification* (Sechidis, Tsoumakas and Vlahavas, 2011) hands out images label by label,
rarest label first, so that every part gets its share of every label as closely as
possible. The ``iterative-stratification`` package (import name ``iterstrat``) implements it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from helpers.labels import target_matrix

__all__ = [
    "random_split_indices",
    "split_label_counts",
    "stratified_split",
]


def _check_fractions(fractions: Mapping[str, float]) -> None:
    bad = [name for name, f in fractions.items() if not f > 0]  # NaN is not > 0 either
    if len(fractions) < 2 or bad:
        which = f"; part {bad[0]!r} has {fractions[bad[0]]!r}" if bad else ""
        raise ValueError(
            f"need at least two parts with positive fractions, got {dict(fractions)}{which}"
        )
    if not np.isclose(sum(fractions.values()), 1.0):
        raise ValueError(f"fractions must add up to 1, got {sum(fractions.values())}")


def _check_not_empty(parts: Mapping[str, np.ndarray], n: int, fractions) -> None:
    """A part with no images cannot train or measure anything: refuse it, naming it."""
    empty = [name for name, idx in parts.items() if len(idx) == 0]
    if empty:
        raise ValueError(
            f"part {empty[0]!r} would be empty: {n} images split as {dict(fractions)}; "
            "use more images or larger fractions"
        )


def random_split_indices(
    n: int, fractions: Mapping[str, float], seed: int = 0
) -> dict[str, np.ndarray]:
    """Shuffle 0..n-1 and cut it into parts of the given fractions (the baseline).

    A part that would get no image is refused (ValueError naming it).
    """
    _check_fractions(fractions)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a whole number of images (0 or more), got {n!r}")
    order = np.random.default_rng(seed).permutation(n)
    sizes = np.round(np.cumsum(list(fractions.values())) * n).astype(int)
    parts = np.split(order, sizes[:-1])
    out = {name: np.sort(part) for name, part in zip(fractions, parts, strict=True)}
    _check_not_empty(out, n, fractions)
    return out


def stratified_split(
    targets: torch.Tensor | np.ndarray, fractions: Mapping[str, float], seed: int = 0
) -> dict[str, np.ndarray]:
    """Split row indices of a multi-hot target matrix by iterative stratification.

    ``fractions`` maps part names to shares, e.g. ``{"train": 0.7, "val": 0.15,
    "test": 0.15}``. Parts are cut off one at a time, the last part first: each cut
    stratifies the images that are left, so every part keeps each label's proportion.
    Returns sorted index arrays, one per part; together they cover every row once.
    Targets must be 0/1 (:func:`helpers.labels.target_matrix`); a part that would get no
    image (too few images for its fraction) is refused, naming it.
    """
    _check_fractions(fractions)
    y = target_matrix(torch.as_tensor(targets).cpu()).numpy().astype(int)
    remaining = np.arange(len(y))
    left = 1.0  # share of the whole data set still in `remaining`
    names = list(fractions)
    out = {}
    for k, name in enumerate(reversed(names[1:])):
        share = fractions[name] / left
        if math.ceil(share * len(remaining)) >= len(remaining):  # scikit-learn rounds up the cut
            raise ValueError(
                f"part {names[len(names) - 2 - k]!r} would be empty: {len(y)} images split as "
                f"{dict(fractions)}; use more images or larger fractions"
            )
        cut = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=share, random_state=seed + k)
        keep, taken = next(cut.split(np.zeros(len(remaining)), y[remaining]))
        out[name] = np.sort(remaining[taken])
        remaining = remaining[keep]
        left -= fractions[name]
    out[names[0]] = np.sort(remaining)
    out = {name: out[name] for name in names}
    _check_not_empty(out, len(y), fractions)
    return out


def split_label_counts(
    targets: torch.Tensor | np.ndarray,
    splits: Mapping[str, np.ndarray],
    vocab: Sequence[str],
) -> pd.DataFrame:
    """How many images of each label land in each part, with the total (one row per label)."""
    y = target_matrix(torch.as_tensor(targets).cpu(), vocab).numpy().astype(int)
    counts = {name: y[idx].sum(0) for name, idx in splits.items()}
    counts["total"] = y.sum(0)
    return pd.DataFrame(counts, index=pd.Index(list(vocab), name="label"))
