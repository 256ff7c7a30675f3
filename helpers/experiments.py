"""Comparing methods: is a gap real, or one lucky run or one lucky test set?

Part 4 compares training methods whose differences can be smaller than the spread between
two seeds of the same method. Every comparison there runs each method over several seeds
and reports the mean with a 95% t-interval (:func:`seed_summary`), so a reader sees whether
a gap is real. The other source of luck is the test set: :func:`paired_bootstrap_micro_f1`
resamples its images to show how much a difference depends on which images were drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from helpers.labels import check_targets

__all__ = [
    "paired_bootstrap_micro_f1",
    "seed_summary",
]


def seed_summary(
    results: pd.DataFrame, by: str | Sequence[str], value: str, confidence: float = 0.95
) -> pd.DataFrame:
    """Mean, standard deviation, number of seeds and a t-interval of `value` per group.

    `results` holds one row per (group, seed) run. The interval is Student's t interval
    for the mean, ``mean ± t * std / sqrt(n)``: with 3 seeds it is wide, which is the point.
    A group with a single run has no spread: its interval is NaN rather than a fake zero width.
    A NaN in `value` is refused: a diverged run must be reported, not averaged away.
    """
    if value not in results.columns:
        raise KeyError(f"no column {value!r}; the columns are {list(results.columns)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    bad = results[value].isna() | ~np.isfinite(results[value].to_numpy(dtype=float))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} run(s) have a NaN or infinite {value!r}, e.g. row "
            f"{results.index[bad][0]!r}: report them instead of averaging them away"
        )
    groups = results.groupby(list([by] if isinstance(by, str) else by), sort=False)[value]
    table = groups.agg(mean="mean", std="std", n="count")
    half = stats.t.ppf(0.5 + confidence / 2, table["n"] - 1) * table["std"] / np.sqrt(table["n"])
    table["ci_low"], table["ci_high"] = table["mean"] - half, table["mean"] + half
    return table


def paired_bootstrap_micro_f1(
    targets: torch.Tensor,
    pred_a: torch.Tensor,
    pred_b: torch.Tensor,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Micro F1 of `pred_a` minus that of `pred_b` on `n_resamples` bootstrap resamples.

    Both predictions are scored on the *same* resampled images (a paired bootstrap), so the
    spread reflects how much the difference depends on which test images we happened to
    draw. Micro F1 only needs each image's true/false positive and false negative counts,
    so each resample is a weighted sum: one matrix product for all resamples.
    `targets` and both predictions must be 0/1 matrices of the same shape.
    """
    y = check_targets(targets)
    if y.ndim != 2 or len(y) == 0:
        raise ValueError(f"targets must be (images, labels), got shape {tuple(y.shape)}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    y = y.numpy().astype(bool)
    rng = np.random.default_rng(seed)
    n = len(y)
    drawn = rng.integers(0, n, (n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    weights = np.bincount(drawn.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)

    def micro_f1(pred, name) -> np.ndarray:
        p = check_targets(pred, y.shape, name).numpy().astype(bool)
        counts = np.stack([(p & y).sum(1), (p & ~y).sum(1), (~p & y).sum(1)], axis=1)
        tp, fp, fn = (weights @ counts).T.astype(np.float64)
        denom = 2 * tp + fp + fn
        return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)

    return micro_f1(pred_a, "pred_a") - micro_f1(pred_b, "pred_b")
