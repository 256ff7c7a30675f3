"""Comparing methods over seeds: the mean and a confidence interval, not one lucky run.

Part 4 compares training methods whose differences can be smaller than the spread between
two seeds of the same method. Every comparison there runs each method over several seeds
and reports the mean with a 95% t-interval, so a reader sees whether a gap is real.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
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
