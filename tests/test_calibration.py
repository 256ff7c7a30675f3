import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, precision_score, recall_score
from torchmetrics.functional.classification import binary_calibration_error

from helpers.calibration import (
    apply_isotonic,
    apply_temperature,
    clopper_pearson_lower,
    expected_calibration_error,
    fit_isotonic,
    fit_temperature,
    precision_recall_at,
    reliability_curve,
    thresholds_for_precision,
)
from helpers.metrics import precision_curve


def random_probs(seed, n=400, labels=3):
    rng = np.random.default_rng(seed)
    p = rng.random((n, labels))
    y = (rng.random((n, labels)) < p**2).astype(float)  # miscalibrated on purpose
    return p, y


# --- ECE and reliability curves ---------------------------------------------------------------


def test_ece_hand_computed():
    # 2 bins: [0, 0.5) holds 0.1, 0.2 (mean 0.15, 1 of 2 positive); [0.5, 1] holds 0.7, 0.8,
    # 0.9 (mean 0.8, 2 of 3 positive). ECE = 2/5 * 0.35 + 3/5 * (0.8 - 2/3) = 0.14 + 0.08.
    p = [0.1, 0.2, 0.7, 0.8, 0.9]
    y = [0, 1, 1, 1, 0]
    assert expected_calibration_error(p, y, n_bins=2) == pytest.approx(0.22)


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
@pytest.mark.parametrize("seed", range(4))
def test_ece_matches_torchmetrics_binary_l1(seed, n_bins):
    p, y = random_probs(seed, labels=1)
    p = p.astype(np.float32)  # torchmetrics bins in the input's dtype
    expected = binary_calibration_error(
        torch.from_numpy(p[:, 0]), torch.from_numpy(y[:, 0]).long(), n_bins=n_bins, norm="l1"
    )
    assert expected_calibration_error(p[:, 0], y[:, 0], n_bins) == pytest.approx(
        expected.item(), abs=1e-6
    )


def test_ece_macro_pooled_and_per_label():
    p, y = random_probs(0)
    per_label = expected_calibration_error(p, y, 10, average=None)
    assert per_label.shape == (3,)
    for j in range(3):
        assert per_label[j] == pytest.approx(expected_calibration_error(p[:, j], y[:, j], 10))
    assert expected_calibration_error(p, y, 10) == pytest.approx(per_label.mean())
    assert expected_calibration_error(p, y, 10, average="pooled") == pytest.approx(
        expected_calibration_error(p.ravel(), y.ravel(), 10)
    )


def test_ece_near_zero_for_calibrated_and_large_for_miscalibrated():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(200_000) < p).astype(float)
    assert expected_calibration_error(p, y, 15) < 0.005
    assert expected_calibration_error(p**3, y, 15) > 0.1


def test_reliability_curve_bins_counts_and_means():
    p = [0.05, 0.1, 0.55, 0.6, 1.0]
    y = [0, 1, 1, 0, 1]
    curve = reliability_curve(p, y, n_bins=4)
    assert curve["count"].tolist() == [2, 0, 2, 1]  # 1.0 goes into the last bin
    assert curve.loc[0, "mean_prob"] == pytest.approx(0.075)
    assert curve.loc[0, "frac_positive"] == pytest.approx(0.5)
    assert np.isnan(curve.loc[1, "mean_prob"])
    assert curve.loc[3, "frac_positive"] == 1.0
    assert curve["lower"].tolist() == [0, 0.25, 0.5, 0.75]


def test_ece_is_the_count_weighted_gap_of_the_reliability_curve():
    p, y = random_probs(3)
    curve = reliability_curve(p, y, 8).dropna()
    gap = (curve["count"] * (curve["mean_prob"] - curve["frac_positive"]).abs()).sum()
    assert gap / p.size == pytest.approx(expected_calibration_error(p, y, 8, average="pooled"))


@pytest.mark.parametrize(
    ("probs", "targets", "message"),
    [
        ([0.2, float("nan")], [0, 1], r"NaN or infinite;\nfirst at image 1, label 0: nan"),
        ([[0.2, 1.5]], [[0, 1]], r"outside \[0, 1\];\nfirst at image 0, label 1: 1.5"),
        ([[0.2, 0.5]], [[0, 0.7]], "0 or 1"),
        ([[0.2, 0.5]], [[0, 1], [1, 0]], "shape"),
        ([], [], "empty"),
    ],
)
def test_bad_input_is_refused(probs, targets, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(probs, targets)
    with pytest.raises(ValueError, match=message):
        reliability_curve(probs, targets)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="average"):
        expected_calibration_error([[0.5]], [[1]], average="micro")


# --- Temperature scaling ----------------------------------------------------------------------


def overconfident_logits(seed, n=4000, scale=(3.0, 0.5)):
    """Logits `scale` times too large (or small) for their labels: the right T is `scale`."""
    g = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(n, len(scale), generator=g, dtype=torch.float64) * 2
    y = torch.rand(n, len(scale), generator=g, dtype=torch.float64) < torch.sigmoid(true_logits)
    return true_logits * torch.tensor(scale, dtype=torch.float64), y.double()


def nll(z, y, t):
    return torch.nn.functional.binary_cross_entropy_with_logits(z / t, y).item()


def test_temperature_is_the_minimum_of_the_nll():
    z, y = overconfident_logits(0, n=2000)
    t = fit_temperature(z, y).item()
    grid = np.exp(np.linspace(np.log(0.5), np.log(5), 801))
    best = grid[np.argmin([nll(z, y, g) for g in grid])]
    assert t == pytest.approx(best, rel=3e-3)
    assert nll(z, y, t) <= min(nll(z, y, t * 1.01), nll(z, y, t / 1.01))


def test_per_label_temperatures_recover_each_scale():
    z, y = overconfident_logits(1, n=20_000)
    t = fit_temperature(z, y, per_label=True)
    assert t.shape == (2,)
    assert t.tolist() == pytest.approx([3.0, 0.5], rel=0.1)
    for j in range(2):  # each label's T is that column's own fit
        assert t[j].item() == pytest.approx(
            fit_temperature(z[:, j : j + 1], y[:, j : j + 1]).item()
        )


def test_temperature_scaling_lowers_ece_and_keeps_ap_exactly():
    z, y = overconfident_logits(2)
    t = fit_temperature(z, y, per_label=True)
    before, after = torch.sigmoid(z), apply_temperature(z, t)
    assert expected_calibration_error(after, y) < expected_calibration_error(before, y) / 2
    for j in range(2):
        assert average_precision_score(y[:, j], after[:, j]) == average_precision_score(
            y[:, j], before[:, j]
        )


def test_temperature_refuses_separable_logits_and_bad_input():
    z = torch.tensor([[-3.0], [-1.0], [1.0], [4.0]])
    y = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    with pytest.raises(ValueError, match="bound"):
        fit_temperature(z, y)
    with pytest.raises(ValueError, match=r"NaN or infinite;\nfirst at image 1, label 0: inf"):
        fit_temperature(torch.tensor([[0.0], [float("inf")]]), torch.tensor([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="0 or 1"):
        fit_temperature(torch.zeros(2, 1), torch.tensor([[0.0], [0.5]]))
    with pytest.raises(ValueError, match="one positive number or one per label"):
        apply_temperature(torch.zeros(2, 3), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="one positive number"):
        apply_temperature(torch.zeros(2, 3), -1.0)


# --- Isotonic regression ----------------------------------------------------------------------


def test_isotonic_matches_sklearn_and_is_monotone_per_label():
    p, y = random_probs(4)
    calibrators = fit_isotonic(p, y)
    out = apply_isotonic(calibrators, p).numpy()
    for j in range(3):
        reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p[:, j], y[:, j])
        np.testing.assert_allclose(out[:, j], reference.predict(p[:, j]))
        order = np.argsort(p[:, j])
        assert (np.diff(out[order, j]) >= 0).all()  # non-decreasing: ties allowed
        assert out[:, j].mean() == pytest.approx(y[:, j].mean())  # pools keep the mean
    assert expected_calibration_error(out, y) < expected_calibration_error(p, y)
    assert len(np.unique(out[:, 0])) < len(np.unique(p[:, 0]))  # steps: ties appear


def test_isotonic_refuses_bad_input():
    with pytest.raises(ValueError, match="0 or 1"):
        fit_isotonic([[0.2], [0.4]], [[0], [2]])
    calibrators = fit_isotonic([[0.2], [0.4]], [[0], [1]])
    with pytest.raises(ValueError, match="one column per calibrator"):
        apply_isotonic(calibrators, [[0.2, 0.3]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        apply_isotonic(calibrators, [[1.2]])


# --- Thresholds for a precision target --------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy_exact_interval(confidence):
    for k, n in [(1, 1), (3, 10), (47, 50), (95, 100), (10, 10)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=2 * confidence - 1, method="exact")
        assert clopper_pearson_lower(k, n, confidence) == pytest.approx(ci.low)


def test_clopper_pearson_hand_values():
    # k = n: the bound solves p^n = 1 - confidence. k = 0: the bound is 0.
    assert clopper_pearson_lower(2, 2, 0.95) == pytest.approx(0.05**0.5)
    assert clopper_pearson_lower(0, 7, 0.95) == 0.0
    with pytest.raises(ValueError, match="whole numbers"):
        clopper_pearson_lower(3, 2)
    with pytest.raises(ValueError, match="confidence"):
        clopper_pearson_lower(1, 2, 1.0)


def test_precision_curve_with_ties():
    t, tp, n = precision_curve([0.9, 0.8, 0.8, 0.3], [1, 0, 1, 1])
    assert t.tolist() == [0.9, 0.8, 0.3]
    assert tp.tolist() == [1, 2, 3]
    assert n.tolist() == [1, 3, 4]


def test_thresholds_for_precision_hand_example():
    # thresholds 0.9 0.8 0.7 0.6 0.5 -> precision 1, 1, 2/3, 3/4, 3/5
    p = torch.tensor([[0.9], [0.8], [0.7], [0.6], [0.5]])
    y = torch.tensor([[1], [1], [0], [1], [0]])
    assert thresholds_for_precision(p, y, 0.7).item() == pytest.approx(0.6)
    assert thresholds_for_precision(p, y, 0.8).item() == pytest.approx(0.8)
    # best lower bound: 3 of 4 at 95% -> about 0.25, below 0.5: never predict
    assert thresholds_for_precision(p, y, 0.5, confidence=0.95).item() == float("inf")


@pytest.mark.parametrize("confidence", [None, 0.9])
@pytest.mark.parametrize("target", [0.6, 0.8, 0.9])
@pytest.mark.parametrize("seed", range(8))
def test_thresholds_for_precision_against_a_brute_force_search(seed, target, confidence):
    rng = np.random.default_rng(seed)
    p = np.round(rng.random((60, 2)), 2)  # rounding makes ties
    y = (rng.random((60, 2)) < p).astype(int)
    got = thresholds_for_precision(p, y, target, confidence).numpy()
    for j in range(2):
        passing = []
        for t in np.unique(p[:, j]):
            pred = p[:, j] >= t
            tp = int((pred & (y[:, j] == 1)).sum())
            ok = tp / pred.sum() >= target
            if confidence is not None:
                ok = (
                    tp > 0
                    and binomtest(tp, int(pred.sum()))
                    .proportion_ci(confidence_level=2 * confidence - 1, method="exact")
                    .low
                    >= target - 1e-12
                )
            if ok:
                passing.append(t)
        assert got[j] == (min(passing) if passing else np.inf)


def test_precision_recall_at_matches_sklearn_and_gives_nan_for_no_predictions():
    p, y = random_probs(5)
    t = np.array([0.3, 0.7, np.inf])  # label 2: never predicted
    table = precision_recall_at(p, y, t)
    pred = (p >= t).astype(int)
    for j in range(2):
        assert table.loc[j, "precision"] == pytest.approx(precision_score(y[:, j], pred[:, j]))
        assert table.loc[j, "recall"] == pytest.approx(recall_score(y[:, j], pred[:, j]))
    assert np.isnan(table.loc[2, "precision"]) and table.loc[2, "recall"] == 0
    assert table.loc[2, "predicted"] == 0


def test_threshold_functions_refuse_bad_input():
    with pytest.raises(ValueError, match="target precision"):
        thresholds_for_precision([[0.5]], [[1]], 1.0)
    with pytest.raises(ValueError, match="0 or 1"):
        thresholds_for_precision([[0.5]], [[0.5]])
    with pytest.raises(ValueError, match="one per label"):
        precision_recall_at([[0.5, 0.5]], [[1, 0]], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"in \[0, 1\], or inf .*every label has nan"):
        precision_recall_at([[0.5]], [[1]], float("nan"))


def test_clopper_pearson_refusal_names_the_pair():
    with pytest.raises(ValueError, match="got 5 of 4 at index 1"):
        clopper_pearson_lower([1, 5], [3, 4])
