import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from helpers.plots import plot_cooccurrence, show_images


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
