import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import multilabel_confusion_matrix, precision_recall_curve

from helpers.plots import plot_confusion_matrices, plot_pr_curves

VOCAB = ["a", "b", "c"]
PROBS = torch.tensor([[0.9, 0.2, 0.50], [0.6, 0.7, 0.10], [0.4, 0.3, 0.80], [0.2, 0.1, 0.50]])
TARGETS = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 0, 0]])


def test_plot_confusion_matrices_draws_sklearn_counts():
    pred = (PROBS >= 0.5).long()
    fig = plot_confusion_matrices(TARGETS, pred, VOCAB, ncols=2)
    axes = fig.axes
    assert len(axes) == 4 and not axes[3].axison  # 3 labels on a 2x2 grid: one blank
    cms = multilabel_confusion_matrix(TARGETS.numpy(), pred.numpy())
    for ax, name, m in zip(axes, VOCAB, cms, strict=False):
        assert ax.get_title() == f"label {name}"
        shown = [int(t.get_text()) for t in ax.texts]
        assert shown == m.ravel().tolist()  # tn, fp, fn, tp in reading order
        # Colours are row-normalised: each true class's row sums to 1.
        rates = ax.images[0].get_array()
        np.testing.assert_allclose(rates, m / m.sum(1, keepdims=True))
    plt.close(fig)


def test_plot_pr_curves_marks_operating_points_on_the_curve():
    fig = plot_pr_curves(
        PROBS, TARGETS, VOCAB, operating_points={"0.5": 0.5, "per label": [0.4, 0.7, 0.5]}
    )
    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == 3
    # Label a at 0.5: predicted on images 0 and 1 -> precision 1/2, recall 1/2.
    line = [ln for ln in axes[0].lines if ln.get_label() == "0.5"][0]
    assert (line.get_xdata()[0], line.get_ydata()[0]) == (0.5, 0.5)
    # Label a at 0.4 (per label): images 0, 1, 2 -> precision 2/3, recall 1.
    line = [ln for ln in axes[0].lines if ln.get_label() == "per label"][0]
    assert np.isclose(line.get_xdata()[0], 1.0) and np.isclose(line.get_ydata()[0], 2 / 3)
    # The curve is scikit-learn's.
    precision, recall, _ = precision_recall_curve(TARGETS[:, 0], PROBS[:, 0])
    np.testing.assert_allclose(axes[0].lines[0].get_xdata(), recall)
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), precision)
    assert axes[0].get_title().startswith("label a: AP ")
    assert fig.legends  # one shared legend
    plt.close(fig)


def test_plot_pr_curves_without_operating_points():
    fig = plot_pr_curves(PROBS, TARGETS, VOCAB, ncols=3)
    assert len(fig.axes) == 3 and not fig.legends
    plt.close(fig)


def test_plot_pr_curves_zoom_sets_both_limits():
    fig = plot_pr_curves(PROBS, TARGETS, VOCAB, zoom=0.6)
    for ax in fig.axes:
        assert ax.get_xlim() == (0.6, 1.01) and ax.get_ylim() == (0.6, 1.01)
    plt.close(fig)


def test_evaluation_figures_take_the_page_width():
    """A page draws each figure at its column's width (issue 21): figsize is obeyed."""
    from helpers.plots import plot_f1_vs_threshold

    figs = [
        plot_confusion_matrices(TARGETS, (PROBS >= 0.5).long(), VOCAB, figsize=(6.9, 3)),
        plot_pr_curves(PROBS, TARGETS, VOCAB, {"0.5": 0.5}, figsize=(6.9, 3)),
        plot_f1_vs_threshold({"test": (PROBS, TARGETS)}, figsize=(6.9, 3)),
    ]
    for fig in figs:
        np.testing.assert_allclose(fig.get_size_inches(), (6.9, 3))
        plt.close(fig)
