import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score
from torch.utils.data import DataLoader, TensorDataset

from helpers.metrics import mean_average_precision, per_label_report, predict_probs

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


class _Scale(torch.nn.Module):
    """Logit = 2 * input, plus a batch norm so train and eval modes give different outputs."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(3, affine=False)

    def forward(self, x):
        return 2 * x + 0 * self.norm(x)


@pytest.mark.parametrize("training", [True, False])
def test_predict_probs_returns_sigmoid_and_restores_mode(training):
    model = _Scale().train(training)
    x = torch.linspace(-2, 2, 12).reshape(4, 3)
    loader = DataLoader(TensorDataset(x, TARGETS[:4]), batch_size=3)
    probs, targets = predict_probs(model, loader)
    torch.testing.assert_close(probs, torch.sigmoid(2 * x))
    torch.testing.assert_close(targets, TARGETS[:4])
    assert model.training is training
    # Eval mode was used: running statistics were not updated by the prediction pass.
    assert model.norm.num_batches_tracked.item() == 0
