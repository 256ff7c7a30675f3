import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from helpers.metrics import mean_average_precision, per_label_report

# A hand-checkable example: 6 images, 3 labels, with ties and a label the model gets wrong.
TARGETS = torch.tensor(
    [[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=torch.float32
)
PROBS = torch.tensor(
    [
        [0.9, 0.2, 0.6],
        [0.4, 0.7, 0.3],
        [0.6, 0.4, 0.8],
        [0.2, 0.4, 0.7],
        [0.3, 0.1, 0.1],
        [0.7, 0.9, 0.2],
    ]
)
VOCAB = ["a", "b", "c"]


def test_per_label_report_matches_sklearn():
    report = per_label_report(PROBS, TARGETS, VOCAB)
    y, p = TARGETS.numpy(), PROBS.numpy()
    pred = (p >= 0.5).astype(int)
    ap = average_precision_score(y, p, average=None)
    np.testing.assert_allclose(report.loc[VOCAB, "AP"], ap, atol=1e-6)
    by_threshold = {"precision": precision_score, "recall": recall_score, "F1": f1_score}
    for column, metric in by_threshold.items():
        expected = metric(y, pred, average=None)
        np.testing.assert_allclose(report.loc[VOCAB, column], expected, atol=1e-6)
    assert report.loc[VOCAB, "support"].tolist() == [3, 3, 3]
    assert report.loc["macro", "support"] == 9
    assert report.loc["macro", "AP"] == pytest.approx(ap.mean(), abs=1e-6)


def test_per_label_report_hand_computed_values():
    report = per_label_report(PROBS, TARGETS, VOCAB)
    # Label a: ranked 0.9 (yes), 0.7 (no), 0.6 (yes), 0.4, 0.3 (yes), 0.2 -> AP = (1 + 2/3 + 3/5)/3
    assert report.loc["a", "AP"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-6)
    # Label a at 0.5: predicted yes for rows 0, 2, 5 -> 2 true positives out of 3, recall 2/3.
    assert report.loc["a", "precision"] == pytest.approx(2 / 3)
    assert report.loc["a", "recall"] == pytest.approx(2 / 3)


def test_mean_average_precision_is_macro_ap():
    expected = average_precision_score(TARGETS.numpy(), PROBS.numpy(), average="macro")
    assert mean_average_precision(PROBS, TARGETS) == pytest.approx(expected, abs=1e-6)


# --- refusals: every metric answers right or says why it cannot ------------------------------


def test_nan_and_inf_scores_are_refused_counting_them():
    probs = PROBS.clone()
    probs[1, 2], probs[4, 0] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"2 of 18 scores are NaN or infinite;\nfirst at image 1"):
        mean_average_precision(probs, TARGETS)
    with pytest.raises(ValueError, match="NaN or infinite"):
        per_label_report(probs, TARGETS, ["a", "b", "c"])


def test_nan_scores_give_nan_only_when_asked():
    probs = PROBS.clone()
    probs[0, 0] = float("nan")
    assert np.isnan(mean_average_precision(probs, TARGETS, nonfinite="nan"))
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        mean_average_precision(PROBS, TARGETS, nonfinite="ignore")


@pytest.mark.parametrize("bad", [0.7, 0.9, float("nan"), 2.0, -1.0])
def test_targets_not_0_or_1_are_refused_saying_what_was_found(bad):
    targets = TARGETS.clone().double()
    targets[3, 1] = bad
    refusal = r"(?s)targets must be 0 or 1 .*1 of 18 .*image 3, label 1"
    with pytest.raises(ValueError, match=refusal):
        mean_average_precision(PROBS, targets)
    with pytest.raises(ValueError, match="soft targets have no right or wrong"):
        per_label_report(PROBS, targets, ["a", "b", "c"])


def test_float_and_bool_zero_one_targets_work():
    expected = mean_average_precision(PROBS, TARGETS.long())
    assert mean_average_precision(PROBS, TARGETS.double()) == expected
    assert mean_average_precision(PROBS, TARGETS.bool()) == expected


def test_float64_scores_keep_their_precision():
    # In float32 the two scores are one tie (AP 0.5); in float64 the positive ranks first.
    probs = torch.tensor([[0.5], [0.5 + 1e-12]], dtype=torch.float64)
    assert mean_average_precision(probs, torch.tensor([[0], [1]])) == 1.0
    assert mean_average_precision(probs.float(), torch.tensor([[0], [1]])) == 0.5


@pytest.mark.parametrize(
    "probs, targets, match",
    [
        (PROBS, TARGETS[:, :2], r"targets have shape \(6, 2\) but the scores \(6, 3\)"),
        (PROBS[:4], TARGETS, r"targets have shape \(6, 3\) but the scores \(4, 3\)"),
        (PROBS[:, 0], TARGETS[:, 0], r"must be 2-D .*got shape \(6,\).*reshape"),
        (PROBS[:0], TARGETS[:0], r"empty \(shape \(0, 3\)\)"),
    ],
)
def test_shapes_are_checked_never_trimmed(probs, targets, match):
    with pytest.raises(ValueError, match=match):
        mean_average_precision(probs, targets)


def test_one_label_input_is_answered_per_label():
    report = per_label_report(PROBS[:, :1], TARGETS[:, :1], ["a"])
    assert report.loc["a", "precision"] == pytest.approx(2 / 3)  # not averaged over 2 classes
    assert mean_average_precision(PROBS[:, :1], TARGETS[:, :1]) == pytest.approx(
        average_precision_score(TARGETS[:, 0], PROBS[:, 0])
    )


def test_probabilities_outside_0_1_are_refused_where_thresholded():
    logits = 4 * PROBS - 2
    with pytest.raises(ValueError, match=r"(?s)outside \[0, 1\].*not logits"):
        per_label_report(logits, TARGETS, ["a", "b", "c"])
    # ranking needs no probabilities: logits rank the same
    assert mean_average_precision(logits, TARGETS) == mean_average_precision(PROBS, TARGETS)


def test_wrong_vocabulary_length_is_refused():
    with pytest.raises(ValueError, match="vocab has 2 names but the scores 3 labels"):
        per_label_report(PROBS, TARGETS, ["a", "b"])


def test_label_without_positives_warns_naming_it():
    targets = TARGETS.clone()
    targets[:, 1] = 0
    with pytest.warns(UserWarning, match=r"no positives for label\(s\) 1: their AP"):
        assert mean_average_precision(PROBS, targets) == pytest.approx(
            average_precision_score(targets, PROBS, average=None).mean(), abs=1e-12
        )
    with pytest.warns(UserWarning, match=r"no positives for label\(s\) b: their AP"):
        mean_average_precision(PROBS, targets, vocab=["a", "b", "c"])
    with pytest.warns(UserWarning, match=r"no positives for label\(s\) b: their AP"):
        per_label_report(PROBS, targets, ["a", "b", "c"])
