import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.experiments import seed_summary


def test_seed_summary_matches_scipy_t_interval():
    runs = pd.DataFrame(
        {"method": ["a"] * 3 + ["b"] * 4, "mAP": [0.80, 0.82, 0.81, 0.70, 0.74, 0.72, 0.71]}
    )
    table = seed_summary(runs, "method", "mAP")
    for method, group in runs.groupby("method"):
        x = group["mAP"].to_numpy()
        low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert table.loc[method, "mean"] == pytest.approx(x.mean())
        assert table.loc[method, "n"] == len(x)
        assert table.loc[method, "ci_low"] == pytest.approx(low)
        assert table.loc[method, "ci_high"] == pytest.approx(high)
    assert list(table.index) == ["a", "b"]  # groups keep the order they first appear in


def test_seed_summary_groups_by_several_columns_and_single_runs_have_no_interval():
    runs = pd.DataFrame({"m": ["a", "a", "b"], "rate": [0.1, 0.1, 0.1], "v": [1.0, 3.0, 2.0]})
    table = seed_summary(runs, ["m", "rate"], "v")
    assert table.loc[("a", 0.1), "mean"] == 2.0
    assert np.isnan(table.loc[("b", 0.1), "ci_low"])


def test_seed_summary_refuses_nan_runs_and_unknown_columns():
    runs = pd.DataFrame({"m": ["a", "a"], "v": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="1 run"):
        seed_summary(runs, "m", "v")
    with pytest.raises(KeyError, match="no column 'x'"):
        seed_summary(runs, "m", "x")
