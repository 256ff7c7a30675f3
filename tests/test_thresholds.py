import pytest
import torch
from sklearn.metrics import f1_score

from helpers.metrics import (
    apply_thresholds,
    threshold_report,
    top_k_predictions,
    tune_global_threshold,
    tune_thresholds,
)

# 4 images, 3 labels; hand-checkable.
PROBS = torch.tensor(
    [
        [0.9, 0.2, 0.50],
        [0.6, 0.7, 0.10],
        [0.4, 0.3, 0.80],
        [0.2, 0.1, 0.50],
    ]
)
TARGETS = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 0, 0]])


def test_apply_thresholds_global_and_per_label():
    assert apply_thresholds(PROBS, 0.5).tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 0, 1]]
    per_label = apply_thresholds(PROBS, torch.tensor([0.95, 0.25, 0.6]))
    assert per_label.tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_apply_thresholds_keeps_a_score_equal_to_the_threshold():
    assert apply_thresholds(torch.tensor([[0.5, 0.4999]]), 0.5).tolist() == [[1, 0]]


def test_apply_thresholds_rejects_wrong_number_of_thresholds():
    with pytest.raises(ValueError, match="one per label"):
        apply_thresholds(PROBS, torch.tensor([0.5, 0.5]))


def test_top_k_predictions_switches_on_exactly_k_labels():
    top1 = top_k_predictions(PROBS, 1)
    assert top1.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
    top2 = top_k_predictions(PROBS, 2)
    assert top2.sum(1).tolist() == [2, 2, 2, 2]
    assert top2[0].tolist() == [1, 0, 1] and top2[1].tolist() == [1, 1, 0]
    assert top_k_predictions(PROBS, 3).eq(1).all()


@pytest.mark.parametrize("k", [0, 4])
def test_top_k_predictions_rejects_impossible_k(k):
    with pytest.raises(ValueError, match="k must be between 1"):
        top_k_predictions(PROBS, k)


def test_tune_global_threshold_hand_computed():
    # 5 positives. At 0.3: predictions [1,0,1],[1,1,0],[1,1,1],[0,0,1] -> tp 5, fp 3, fn 0,
    # micro F1 = 10/13. At 0.55: [1,0,0],[1,1,0],[0,0,1],[0,0,0] -> tp 3, fp 1, fn 2, F1 = 6/9.
    t, score = tune_global_threshold(PROBS, TARGETS, candidates=[0.3, 0.55])
    assert t == 0.3
    assert score == pytest.approx(10 / 13)
    t, score = tune_global_threshold(PROBS, TARGETS, candidates=[0.55, 0.95])
    assert t == 0.55
    assert score == pytest.approx(6 / 9)


def test_tune_global_threshold_default_grid_hand_computed():
    # Predictions only change at the 9 distinct scores. Micro F1 (5 positives) for a
    # threshold t in: (0.2, 0.3] tp 5 fp 3 -> 10/13; (0.3, 0.4] tp 5 fp 2 -> 10/12 (best);
    # (0.4, 0.5] tp 4 fp 2 fn 1 -> 8/11; lower t adds false positives, higher t loses positives.
    # The lowest grid point of the best interval wins: 0.31 (0.30 still keeps the 0.3 score).
    t, score = tune_global_threshold(PROBS, TARGETS)
    assert t == 0.31
    assert score == pytest.approx(10 / 12)
    # Macro F1 at 0.31: a P 2/3 R 1 -> 0.8; b -> 1; c P 2/3 R 1 -> 0.8.
    t, score = tune_global_threshold(PROBS, TARGETS, metric="macro_f1")
    assert t == 0.31
    assert score == pytest.approx((0.8 + 1 + 0.8) / 3)


def test_tune_global_threshold_samples_f1_hand_computed():
    # Per image at 0.3: [1,0,1] exact -> 1; [1,1,0] vs b -> P 1/2 R 1 -> 2/3;
    # [1,1,1] vs a c -> P 2/3 R 1 -> 0.8; [0,0,1] vs nothing -> 0. Mean 37/60.
    # At 0.55: [1,0,0] -> 2/3; [1,1,0] -> 2/3; [0,0,1] -> 2/3; the empty image gets an empty
    # prediction, right, but scores 0 (zero_division=0). Mean 1/2.
    t, score = tune_global_threshold(PROBS, TARGETS, metric="samples_f1", candidates=[0.3, 0.55])
    assert t == 0.3
    assert score == pytest.approx(37 / 60)
    _, score = tune_global_threshold(PROBS, TARGETS, metric="samples_f1", candidates=[0.55])
    assert score == pytest.approx(0.5)
    expected = f1_score(TARGETS, apply_thresholds(PROBS, 0.55), average="samples", zero_division=0)
    assert score == pytest.approx(expected)


def test_tune_global_threshold_all_tied_scores_picks_the_lowest_candidate():
    probs = torch.full((4, 3), 0.5)
    # Every candidate <= 0.5 predicts everything (same F1); above 0.5 nothing (F1 0).
    t, score = tune_global_threshold(probs, TARGETS)
    assert t == 0.01
    assert score == pytest.approx(2 * 5 / (2 * 5 + 7))  # tp 5, fp 7


def test_tune_global_threshold_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        tune_global_threshold(PROBS, TARGETS, metric="accuracy")


def test_tune_thresholds_hand_computed():
    # Label 0: positives at 0.9 and 0.4, negatives 0.6 and 0.2. Threshold 0.9 -> F1 2/3;
    # 0.6 -> P 1/2 R 1/2 F1 1/2; 0.4 -> P 2/3 R 1 F1 0.8 (best); 0.2 -> P 1/2 R 1 F1 2/3.
    # Label 1: the one positive has the top score 0.7 -> threshold 0.7, F1 1.
    # Label 2: positives 0.5 and 0.8, negatives 0.1 and 0.5 (a tie with a positive):
    # 0.8 -> F1 2/3; 0.5 -> P 2/3 R 1 F1 0.8 (best).
    t = tune_thresholds(PROBS, TARGETS)
    torch.testing.assert_close(t, torch.tensor([0.4, 0.7, 0.5]))


def test_tune_thresholds_maximises_each_labels_f1_exactly():
    g = torch.Generator().manual_seed(2)
    probs = torch.rand(80, 4, generator=g)
    targets = (torch.rand(80, 4, generator=g) < probs).long()
    tuned = tune_thresholds(probs, targets)
    tuned_f1 = f1_score(targets, apply_thresholds(probs, tuned), average=None)
    for j in range(4):  # no unique score of the label does better
        for c in probs[:, j].unique():
            f1 = f1_score(targets[:, j], (probs[:, j] >= c).long(), zero_division=0)
            assert f1 <= tuned_f1[j] + 1e-12


def test_tune_thresholds_all_tied_scores():
    # One unique score per label: its only candidate threshold, which predicts every image.
    probs = torch.full((4, 3), 0.3)
    torch.testing.assert_close(tune_thresholds(probs, TARGETS), torch.full((3,), 0.3))


def test_tune_thresholds_falls_back_for_a_label_without_positives():
    targets = TARGETS.clone()
    targets[:, 1] = 0
    t = tune_thresholds(PROBS, targets, fallback=0.42)
    assert t[1].item() == pytest.approx(0.42)
    assert t[0].item() == pytest.approx(0.4)


def test_threshold_report_hand_computed():
    report = threshold_report(PROBS, TARGETS, ["a", "b", "c"], 0.5)
    # At 0.5: a predicted for images 0,1 (tp 1, fp 1, fn 1); b for image 1 (tp 1);
    # c for images 0,2,3 (tp 2, fp 1).
    assert report.loc[["a", "b", "c"], "predicted"].tolist() == [2, 1, 3]
    assert report.loc["a", "precision"] == pytest.approx(0.5)
    assert report.loc["a", "recall"] == pytest.approx(0.5)
    assert report.loc["c", "precision"] == pytest.approx(2 / 3)
    assert report.loc["micro", "precision"] == pytest.approx(4 / 6)
    assert report.loc["micro", "recall"] == pytest.approx(4 / 5)
    expected_macro = f1_score(TARGETS, apply_thresholds(PROBS, 0.5), average="macro")
    assert report.loc["macro", "F1"] == pytest.approx(expected_macro)
    assert report.loc["a", "threshold"] == pytest.approx(0.5)


def test_threshold_report_per_label_thresholds_and_nothing_predicted():
    report = threshold_report(PROBS, TARGETS, ["a", "b", "c"], torch.tensor([0.95, 0.5, 0.5]))
    assert report.loc["a", "predicted"] == 0
    assert report.loc["a", "precision"] == 0.0  # zero_division=0
    assert report.loc["a", "threshold"] == pytest.approx(0.95)


# --- one threshold rule, refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    "thresholds, match",
    [
        (1.2, r"in \[0, 1\]"),
        (-0.1, r"in \[0, 1\]"),
        (float("nan"), r"in \[0, 1\]"),
        ([[0.5, 0.5, 0.5]], "one number or one per label"),
    ],
)
def test_bad_thresholds_are_refused(thresholds, match):
    with pytest.raises(ValueError, match=match):
        apply_thresholds(PROBS, thresholds)


def test_probabilities_outside_0_1_are_refused_by_apply_thresholds():
    with pytest.raises(ValueError, match=r"1 of 12 probs are outside \[0, 1\]"):
        apply_thresholds(PROBS + torch.tensor([[0.0, 0.0, 0.6]] + [[0.0] * 3] * 3), 0.5)


def test_a_tiny_threshold_is_not_rounded_to_zero():
    probs = torch.zeros(2, 2, dtype=torch.float64)
    assert apply_thresholds(probs, 1e-200).sum() == 0  # 0 >= 1e-200 is False


def test_tune_global_threshold_ties_do_not_depend_on_candidate_order():
    probs = torch.full((4, 3), 0.5)
    assert tune_global_threshold(probs, TARGETS, candidates=[0.4, 0.2, 0.3])[0] == 0.2
    assert tune_global_threshold(probs, TARGETS, candidates=[0.3, 0.4, 0.2])[0] == 0.2
    with pytest.raises(ValueError, match="candidates is empty"):
        tune_global_threshold(probs, TARGETS, candidates=[])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        tune_global_threshold(probs, TARGETS, candidates=[0.5, 2.0])


def test_tune_thresholds_keeps_float64():
    probs = torch.tensor(
        [[0.1 + 1e-12, 0.3], [0.1, 0.6], [0.7, 0.2], [0.2, 0.9]], dtype=torch.float64
    )
    targets = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]])
    t = tune_thresholds(probs, targets)
    assert t.dtype == torch.float64
    assert t[0].item() == 0.1 + 1e-12  # float32 would round it to 0.1 and predict the negative too
