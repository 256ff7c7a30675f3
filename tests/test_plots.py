import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from helpers.metrics import f1_by_threshold
from helpers.plots import (
    plot_cooccurrence,
    plot_f1_vs_threshold,
    show_images,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_show_images_grid_and_titles():
    fig = show_images(torch.zeros(5, 1, 8, 8), titles=list("abcde"), ncols=3)
    axes = fig.axes
    assert len(axes) == 6  # 2 rows x 3 columns
    assert [ax.get_title() for ax in axes[:5]] == list("abcde")
    assert not axes[5].axison  # the unused cell stays blank


def test_show_images_without_frame_hides_axes():
    fig = show_images(torch.zeros(2, 8, 8))
    assert not any(ax.axison for ax in fig.axes)


def test_show_images_frame_draws_a_border_but_no_ticks():
    fig = show_images(torch.zeros(3, 1, 8, 8), ncols=2, frame=True)
    used, unused = fig.axes[:3], fig.axes[3]
    for ax in used:
        assert ax.axison
        assert ax.get_xticks().size == 0 and ax.get_yticks().size == 0
        assert all(spine.get_visible() for spine in ax.spines.values())
    assert not unused.axison


def _counts() -> pd.DataFrame:
    names = ["a", "b", "c"]
    return pd.DataFrame([[10, 2, 5], [2, 4, 1], [5, 1, 20]], index=names, columns=names)


def test_plot_cooccurrence_keeps_the_diagonal_by_default():
    image = plot_cooccurrence(_counts()).axes[0].images[0]
    shown = np.ma.filled(image.get_array().astype(float), np.nan)
    assert np.allclose(np.diag(shown), 1.0)  # normalised: P(i | i) = 1
    assert image.get_clim()[1] == pytest.approx(1.0)


def test_plot_cooccurrence_mask_diagonal_blanks_it_and_rescales_colours():
    image = plot_cooccurrence(_counts(), mask_diagonal=True).axes[0].images[0]
    shown = np.ma.filled(image.get_array().astype(float), np.nan)
    assert np.isnan(np.diag(shown)).all()
    off = shown[~np.eye(3, dtype=bool)]
    assert not np.isnan(off).any()
    assert image.get_clim() == pytest.approx((off.min(), off.max()))  # 0.05 to 0.5


def _scores_and_targets(n=300, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, labels)) < 0.3).astype(np.int64)
    probs = np.clip(0.6 * targets + 0.5 * rng.random((n, labels)), 0, 1)
    return torch.tensor(probs, dtype=torch.float32), torch.tensor(targets)


def test_f1_by_threshold_matches_sklearn_with_the_ge_rule():
    from sklearn.metrics import f1_score

    probs, targets = _scores_and_targets()
    probs[0, 0] = 0.5  # a score exactly at a threshold: >= predicts it
    table = f1_by_threshold(probs, targets, [0.25, 0.5, 0.75])
    for t in (0.25, 0.5, 0.75):
        pred = (probs.numpy() >= t).astype(int)
        for average in ("micro", "macro"):
            expected = f1_score(targets.numpy(), pred, average=average, zero_division=0)
            assert table.loc[t, average] == pytest.approx(expected)


def test_f1_by_threshold_default_grid_peaks_where_tune_global_threshold_does():
    from helpers.metrics import tune_global_threshold

    probs, targets = _scores_and_targets(seed=1)
    table = f1_by_threshold(probs, targets)
    assert len(table) == 99 and table.index[0] == 0.01 and table.index[-1] == 0.99
    for average in ("micro", "macro"):
        best, score = tune_global_threshold(probs, targets, metric=f"{average}_f1")
        assert table[average].idxmax() == best
        assert table[average].max() == pytest.approx(score)


def test_plot_f1_vs_threshold_draws_the_computed_values_and_the_marks():
    from sklearn.metrics import f1_score

    val, test = _scores_and_targets(seed=2), _scores_and_targets(seed=3)
    per_label = torch.tensor([0.2, 0.4, 0.6, 0.8])
    fig = plot_f1_vs_threshold(
        {"validation": val, "test": test},
        marks={"0.5": 0.5, "tuned": 0.37},
        per_label={"per label": per_label},
    )
    micro_ax, macro_ax = fig.axes
    for ax, average in ((micro_ax, "micro"), (macro_ax, "macro")):
        lines = {line.get_gid(): line for line in ax.lines if line.get_gid()}
        assert set(lines) == {f"validation/{average}", f"test/{average}"}
        for name, (probs, targets) in (("validation", val), ("test", test)):
            x, y = lines[f"{name}/{average}"].get_data()
            for i in (9, 49, 79):  # thresholds 0.1, 0.5, 0.8
                pred = (probs.numpy() >= x[i]).astype(int)
                expected = f1_score(targets.numpy(), pred, average=average, zero_division=0)
                assert y[i] == pytest.approx(expected)
        vertical = [
            line.get_xdata()[0] for line in ax.lines if line.get_label() in {"0.5", "tuned"}
        ]
        assert sorted(vertical) == [0.37, 0.5]
        ticks = next(line for line in ax.lines if line.get_label() == "per label")
        assert np.allclose(ticks.get_xdata(), per_label.numpy())
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["validation", "test", "0.5", "tuned", "per label"]
