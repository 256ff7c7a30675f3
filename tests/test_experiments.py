import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.experiments import paired_differences, seed_summary


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


# --- paired_differences ------------------------------------------------------------------

PAIRED = pd.DataFrame(
    {
        "method": ["base"] * 4 + ["a"] * 4 + ["b"] * 4,
        "seed": [0, 1, 2, 3] * 3,
        "mAP": [0.80, 0.70, 0.90, 0.75, 0.82, 0.71, 0.93, 0.76, 0.79, 0.72, 0.88, 0.74],
    }
)


def test_paired_differences_match_scipys_paired_t_interval():
    table = paired_differences(PAIRED, "mAP", "base")
    base = PAIRED[PAIRED["method"] == "base"].set_index("seed")["mAP"]
    assert list(table.index) == ["a", "b"]
    for name in ["a", "b"]:
        x = PAIRED[PAIRED["method"] == name].set_index("seed")["mAP"].loc[base.index]
        ci = stats.ttest_rel(x, base).confidence_interval(0.95)
        assert table.loc[name, "mean"] == pytest.approx((x - base).mean())
        assert table.loc[name, "n"] == 4
        assert table.loc[name, "ci_low"] == pytest.approx(ci.low)
        assert table.loc[name, "ci_high"] == pytest.approx(ci.high)
    # pairing matters: the unpaired interval of "a" contains 0, the paired one does not
    assert table.loc["a", "ci_low"] > 0
    unpaired = stats.ttest_ind(PAIRED[PAIRED["method"] == "a"]["mAP"], base).confidence_interval(
        0.95
    )
    assert unpaired.low < 0


def test_paired_differences_by_groups_and_rows_in_any_order():
    two = pd.concat([PAIRED.assign(rate=0.25), PAIRED.assign(rate=0.5)])
    shuffled = two.sample(frac=1, random_state=0)
    table = paired_differences(shuffled, "mAP", "base", by="rate")
    single = paired_differences(PAIRED, "mAP", "base")
    for rate in (0.25, 0.5):
        assert table.loc[("a", rate), "mean"] == pytest.approx(single.loc["a", "mean"])
        assert table.loc[("b", rate), "ci_low"] == pytest.approx(single.loc["b", "ci_low"])


def test_paired_differences_refuse_missing_or_doubled_pairs_naming_them():
    with pytest.raises(ValueError, match=r"method 'b' has no run at seed 3"):
        paired_differences(PAIRED.iloc[:-1], "mAP", "base")
    with pytest.raises(ValueError, match="method .base. has more than one run at seed 0"):
        paired_differences(pd.concat([PAIRED, PAIRED.iloc[:1]]), "mAP", "base")
    with pytest.raises(ValueError, match="baseline 'c' is not among"):
        paired_differences(PAIRED, "mAP", "c")
    with pytest.raises(ValueError, match="1 run"):
        paired_differences(PAIRED.assign(mAP=[float("nan")] + [0.5] * 11), "mAP", "base")
    with pytest.raises(KeyError, match="no column 'run'"):
        paired_differences(PAIRED, "mAP", "base", pair="run")
