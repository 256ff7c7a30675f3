import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    coverage_error,
    f1_score,
    hamming_loss,
    label_ranking_average_precision_score,
    label_ranking_loss,
    precision_score,
    recall_score,
)
from torchmetrics.functional.classification import (
    binary_average_precision,
    multilabel_coverage_error,
    multilabel_exact_match,
    multilabel_hamming_distance,
    multilabel_ranking_average_precision,
    multilabel_ranking_loss,
)

from helpers.experiments import paired_bootstrap_micro_f1
from helpers.metrics import (
    apply_thresholds,
    average_precision_by_hand,
    evaluate,
    top_k_predictions,
    trivial_baselines,
)

TARGETS = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
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


def random_case(seed: int, n: int = 50, m: int = 6):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, m, generator=g)
    targets = (torch.rand(n, m, generator=g) < 0.3).long()
    targets[0] = 1  # every label has a positive
    return probs, targets


def test_evaluate_rows_match_scikit_learn_and_torchmetrics():
    for seed in range(3):
        probs, y = random_case(seed)
        table = evaluate(probs, y, 0.4)["value"]
        pred = (probs >= 0.4).long().numpy()
        yn, sn = y.numpy(), probs.numpy()
        assert table["mAP", "macro"] == pytest.approx(average_precision_score(yn, sn), abs=1e-6)
        for average in ("micro", "macro", "samples"):
            expected = f1_score(yn, pred, average=average, zero_division=0)
            assert table["F1", average] == pytest.approx(expected)
            expected = precision_score(yn, pred, average=average, zero_division=0)
            assert table["precision", average] == pytest.approx(expected)
            expected = recall_score(yn, pred, average=average, zero_division=0)
            assert table["recall", average] == pytest.approx(expected)
        assert table["Hamming loss", "all elements"] == pytest.approx(hamming_loss(yn, pred))
        tm_hamming = multilabel_hamming_distance(probs, y, num_labels=6, threshold=0.4).item()
        assert table["Hamming loss", "all elements"] == pytest.approx(tm_hamming, abs=1e-6)
        assert table["per-element accuracy", "all elements"] == pytest.approx(
            1 - hamming_loss(yn, pred)
        )
        assert table["subset accuracy", "samples"] == pytest.approx(accuracy_score(yn, pred))
        tm_exact = multilabel_exact_match(probs, y, num_labels=6, threshold=0.4).item()
        assert table["subset accuracy", "samples"] == pytest.approx(tm_exact, abs=1e-6)
        assert table["labels per image", "samples"] == pytest.approx(pred.sum(1).mean())
        lrap = label_ranking_average_precision_score(yn, sn)
        assert table["label ranking AP", "samples"] == pytest.approx(lrap)
        assert table["coverage error", "samples"] == pytest.approx(coverage_error(yn, sn))
        assert table["ranking loss", "samples"] == pytest.approx(label_ranking_loss(yn, sn))


@pytest.mark.parametrize("seed", range(5))
def test_evaluate_ranking_rows_match_torchmetrics_on_random_input(seed):
    """A second, independent implementation of the ranking rows (random scores: no ties)."""
    probs, y = random_case(10 + seed, n=40, m=5)
    table = evaluate(probs, y)["value"]
    kw = {"num_labels": 5}
    expected = multilabel_ranking_average_precision(probs, y, **kw).item()
    assert table["label ranking AP", "samples"] == pytest.approx(expected, abs=1e-5)
    expected = multilabel_coverage_error(probs, y, **kw).item()
    assert table["coverage error", "samples"] == pytest.approx(expected, abs=1e-5)
    expected = multilabel_ranking_loss(probs, y, **kw).item()
    assert table["ranking loss", "samples"] == pytest.approx(expected, abs=1e-5)


def test_ranking_loss_on_ties_differs_between_the_libraries():
    """All-equal scores: scikit-learn counts every tied (true, false) pair as wrongly
    ordered (loss 1); torchmetrics does not (25/36 here). `evaluate` uses scikit-learn, so
    a ranking loss must say which library computed it."""
    y = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 1]])
    scores = torch.zeros(3, 4)
    assert label_ranking_loss(y.numpy(), scores.numpy()) == 1.0
    tm = multilabel_ranking_loss(scores, y, num_labels=4).item()
    assert tm == pytest.approx(25 / 36, abs=1e-4)  # 0.694
    assert evaluate(scores, y)["value"]["ranking loss", "samples"] == 1.0
    # The other two ranking rows agree on ties.
    table = evaluate(scores, y)["value"]
    expected = multilabel_ranking_average_precision(scores, y, num_labels=4).item()
    assert table["label ranking AP", "samples"] == pytest.approx(expected, abs=1e-5)
    expected = multilabel_coverage_error(scores, y, num_labels=4).item()
    assert table["coverage error", "samples"] == pytest.approx(expected, abs=1e-5) == 4.0


def test_evaluate_all_tied_scores():
    """Every score 0.5: everything is predicted at 0.5, nothing at 0.6; AP = frequency."""
    y = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    scores = torch.full((4, 3), 0.5)
    at_05 = evaluate(scores, y, 0.5)["value"]
    assert at_05["recall", "micro"] == 1.0
    assert at_05["precision", "micro"] == pytest.approx(6 / 12)
    assert at_05["labels per image", "samples"] == 3.0
    assert at_05["mAP", "macro"] == pytest.approx(np.mean([2 / 4, 1 / 4, 3 / 4]))
    at_06 = evaluate(scores, y, 0.6)["value"]
    assert at_06["labels per image", "samples"] == 0.0 and at_06["F1", "micro"] == 0.0


@pytest.mark.filterwarnings("ignore:No positive")
def test_evaluate_label_without_positives_matches_the_libraries():
    probs, y = random_case(3, n=30, m=4)
    y[:, 1] = 0
    table = evaluate(probs, y)["value"]
    yn, pred = y.numpy(), (probs >= 0.5).long().numpy()
    for average in ("micro", "macro", "samples"):
        for name, fn in [("precision", precision_score), ("recall", recall_score)]:
            expected = fn(yn, pred, average=average, zero_division=0)
            assert table[name, average] == pytest.approx(expected)
    # Label 1 has recall 0/0 -> 0: macro recall averages a 0 in.
    per_label = recall_score(yn, pred, average=None, zero_division=0)
    assert per_label[1] == 0.0
    assert table["recall", "macro"] == pytest.approx(per_label.mean())


@pytest.mark.filterwarnings("ignore:No positive")
def test_evaluate_image_without_labels_scores_zero_in_samples_metrics():
    """Image 1 has no labels and none are predicted: right, yet it scores 0 (zero_division=0)."""
    y = torch.tensor([[1, 0], [0, 0]])
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.1]])
    table = evaluate(probs, y)["value"]
    for name in ("precision", "recall", "F1"):
        assert table[name, "samples"] == pytest.approx(0.5)  # image 0 scores 1, image 1 scores 0
    assert table["subset accuracy", "samples"] == 1.0  # both label sets are exactly right
    # Ranking rows: an image without labels counts as perfectly ranked in both libraries.
    assert table["label ranking AP", "samples"] == 1.0
    expected = multilabel_ranking_average_precision(probs, y, num_labels=2).item()
    assert table["label ranking AP", "samples"] == pytest.approx(expected)


# --- paired bootstrap of a micro-F1 difference ------------------------------------------------


def test_paired_bootstrap_matches_scikit_learn_on_the_same_resamples():
    probs, y = random_case(4, n=40, m=5)
    a, b = (probs >= 0.4).long(), (probs >= 0.6).long()
    diffs = paired_bootstrap_micro_f1(y, a, b, n_resamples=20, seed=7)
    assert diffs.shape == (20,)
    drawn = np.random.default_rng(7).integers(0, 40, (20, 40))  # the same draws
    for r in range(20):
        i = drawn[r]
        expected = f1_score(y[i], a[i], average="micro", zero_division=0) - f1_score(
            y[i], b[i], average="micro", zero_division=0
        )
        assert diffs[r] == pytest.approx(expected)


def test_paired_bootstrap_of_identical_predictions_is_zero_and_seeded():
    probs, y = random_case(5)
    a = (probs >= 0.5).long()
    assert np.all(paired_bootstrap_micro_f1(y, a, a, n_resamples=50) == 0.0)
    b = (probs >= 0.3).long()
    first = paired_bootstrap_micro_f1(y, a, b, n_resamples=50, seed=1)
    np.testing.assert_array_equal(first, paired_bootstrap_micro_f1(y, a, b, n_resamples=50, seed=1))
    # Predict-nothing has micro F1 0 on every resample (0/0 -> 0, no NaN).
    nothing = torch.zeros_like(a)
    diffs = paired_bootstrap_micro_f1(y, a, nothing, n_resamples=50)
    assert np.isfinite(diffs).all() and (diffs > 0).all()


def test_evaluate_is_tidy():
    table = evaluate(PROBS, TARGETS)
    assert list(table.columns) == ["value"]
    assert table.index.names == ["metric", "average"]
    assert table.index.is_unique
    assert ("F1", "samples") in table.index and ("mAP", "macro") in table.index


def test_evaluate_hand_computed_values():
    table = evaluate(PROBS, TARGETS, 0.5)["value"]
    # At 0.5: predictions [1,0,1],[0,1,0],[1,0,1],[0,0,1],[0,0,0],[1,1,0]. Rows 0 and 3 are
    # exact; row 1 misses c, row 2 misses b and adds c, row 4 misses a, row 5 adds a.
    # -> tp 6, fp 2, fn 3: 5 of 18 decisions wrong, 2 of 6 rows exact.
    assert table["precision", "micro"] == pytest.approx(6 / 8)
    assert table["recall", "micro"] == pytest.approx(6 / 9)
    assert table["Hamming loss", "all elements"] == pytest.approx(5 / 18)
    assert table["subset accuracy", "samples"] == pytest.approx(2 / 6)
    assert table["labels per image", "samples"] == pytest.approx(8 / 6)


def test_evaluate_accepts_predictions_such_as_top_k():
    top1 = top_k_predictions(PROBS, 1)
    table = evaluate(PROBS, TARGETS, predictions=top1)["value"]
    assert table["labels per image", "samples"] == 1.0
    expected = f1_score(TARGETS, top1, average="micro")
    assert table["F1", "micro"] == pytest.approx(expected)


def test_evaluate_predict_nothing_scores_one_minus_density():
    """The lesson of the baselines: per-element accuracy rewards predicting nothing."""
    table = evaluate(torch.zeros(6, 3), TARGETS)["value"]
    density = TARGETS.float().mean().item()
    assert table["per-element accuracy", "all elements"] == pytest.approx(1 - density)
    for metric in ("precision", "recall", "F1"):
        assert table[metric, "micro"] == 0.0  # zero_division=0, no warning-dependent value
    assert table["subset accuracy", "samples"] == 0.0
    assert table["labels per image", "samples"] == 0.0
    # Constant scores: every label's AP is its frequency.
    assert table["mAP", "macro"] == pytest.approx(TARGETS.float().mean(0).mean().item())


def test_trivial_baselines_shapes_and_values():
    train = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    b = trivial_baselines(train, 5)
    assert set(b) == {"predict nothing", "label frequency", "predict everything"}
    assert all(s.shape == (5, 3) for s in b.values())
    torch.testing.assert_close(b["label frequency"][3], torch.tensor([0.75, 0.25, 0.0]))
    assert b["predict nothing"].sum() == 0 and b["predict everything"].eq(1).all()
    # At 0.5 the frequency baseline predicts the labels present in most training images.
    assert apply_thresholds(b["label frequency"], 0.5)[0].tolist() == [1, 0, 0]


# --- the hand-written average precision, against both libraries -----------------------------


def libraries_ap(scores, labels):
    sk = average_precision_score(labels, scores)
    tm = binary_average_precision(torch.as_tensor(scores).float(), torch.as_tensor(labels)).item()
    return sk, tm


@pytest.mark.parametrize("seed", range(20))
def test_average_precision_by_hand_matches_libraries_on_random_input(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, n)
    labels[0] = 1
    scores = rng.random(n)
    sk, tm = libraries_ap(scores, labels)
    assert average_precision_by_hand(scores, labels) == pytest.approx(sk, abs=1e-9)
    assert average_precision_by_hand(scores, labels) == pytest.approx(tm, abs=1e-5)


@pytest.mark.parametrize("seed", range(20))
def test_average_precision_by_hand_matches_libraries_with_many_ties(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, n)
    labels[-1] = 1
    scores = rng.integers(0, 4, n) / 4  # only 4 distinct values: ties everywhere
    sk, tm = libraries_ap(scores, labels)
    assert average_precision_by_hand(scores, labels) == pytest.approx(sk, abs=1e-9)
    assert average_precision_by_hand(scores, labels) == pytest.approx(tm, abs=1e-5)


def test_average_precision_by_hand_tie_example_by_hand():
    # Ranks: 0.9 (pos) -> P 1 at recall 1/4; the 0.8 tie holds 2 pos + 1 neg -> P 3/4 at recall 3/4;
    # 0.3 (neg), 0.1 (pos) -> P 4/6 at recall 1. AP = 1/4 * 1 + 2/4 * 3/4 + 1/4 * 4/6.
    scores = [0.9, 0.8, 0.8, 0.8, 0.3, 0.1]
    labels = [1, 0, 1, 1, 0, 1]
    expected = 0.25 + 0.5 * 0.75 + 0.25 * 4 / 6
    assert average_precision_by_hand(scores, labels) == pytest.approx(expected)
    # The order of tied items must not matter.
    assert average_precision_by_hand(scores, [1, 1, 1, 0, 0, 1]) == pytest.approx(expected)


@pytest.mark.parametrize(
    "scores, labels",
    [
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]),  # all scores tied: AP = prevalence
        ([0.0, 0.0, 0.0], [1, 0, 0]),  # all-zero scores (a model that predicts nothing)
        ([0.1, 0.2, 0.9], [1, 1, 1]),  # every image positive: AP = 1
        ([0.9, 0.1], [0, 1]),  # the positive ranked last
    ],
)
def test_average_precision_by_hand_adversarial(scores, labels):
    sk, tm = libraries_ap(np.array(scores), np.array(labels))
    assert average_precision_by_hand(scores, labels) == pytest.approx(sk, abs=1e-9)
    assert average_precision_by_hand(scores, labels) == pytest.approx(tm, abs=1e-6)


@pytest.mark.filterwarnings("ignore:No positive")
def test_average_precision_without_positives_is_zero_like_the_libraries():
    """Undefined mathematically; scikit-learn and torchmetrics warn and return 0."""
    scores, labels = np.array([0.3, 0.9, 0.1]), np.zeros(3, dtype=int)
    sk, tm = libraries_ap(scores, labels)
    assert sk == 0.0 and tm == 0.0
    assert average_precision_by_hand(scores, labels) == 0.0


@pytest.mark.filterwarnings("ignore:No positive")
def test_macro_map_counts_a_label_without_positives_as_zero():
    targets = TARGETS.clone()
    targets[:, 2] = 0
    table = evaluate(PROBS, targets)["value"]
    per_label = [average_precision_by_hand(PROBS[:, j], targets[:, j]) for j in range(3)]
    assert per_label[2] == 0.0
    assert table["mAP", "macro"] == pytest.approx(np.mean(per_label), abs=1e-6)


def test_precision_recall_f1_zero_division_can_be_nan():
    from helpers.metrics import precision_recall_f1

    y = torch.tensor([[1, 0], [0, 0]])
    p = torch.tensor([[1, 0], [0, 0]])
    zero = precision_recall_f1(y, p)
    nan = precision_recall_f1(y, p, zero_division=np.nan)
    assert zero["precision"][1] == 0 and np.isnan(nan["precision"][1])
    assert nan["precision"][0] == zero["precision"][0] == 1.0
