import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

from helpers.plots import plot_per_label_comparison  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


VALUES = pd.DataFrame(
    {"BCE": [0.9, 0.8, 0.1], "focal": [0.85, 0.7, 0.3]}, index=pd.Index(["a", "b", "c"])
)


def bars(ax):
    return [p for c in ax.containers if isinstance(c, BarContainer) for p in c.patches]


def test_one_bar_per_label_and_method_with_the_right_heights():
    ax = plot_per_label_comparison(VALUES).axes[0]
    heights = sorted(round(b.get_height(), 6) for b in bars(ax))
    assert heights == sorted(VALUES.to_numpy().ravel().round(6).tolist())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["BCE", "focal"]
    assert ax.get_xlabel() == "label"


def test_bars_of_one_label_sit_side_by_side_around_its_tick():
    ax = plot_per_label_comparison(VALUES).axes[0]
    centres = sorted(b.get_x() + b.get_width() / 2 for b in bars(ax))
    assert np.allclose(centres, [-0.2, 0.2, 0.8, 1.2, 1.8, 2.2])


def test_highlighted_labels_are_shaded_and_named():
    ax = plot_per_label_comparison(VALUES, highlight=["c"], title="t").axes[0]
    spans = [p for p in ax.patches if p.get_gid() == "highlight"]
    assert len(spans) == 1
    left, right = spans[0].get_bbox().x0, spans[0].get_bbox().x1
    assert (left, right) == (pytest.approx(1.5), pytest.approx(2.5))
    assert not [p for p in plot_per_label_comparison(VALUES).axes[0].patches if p.get_gid()]
    assert ax.get_xlabel() == "label (shaded: c)"
    assert ax.get_title() == "t"


def test_error_bars_are_drawn_when_given():
    errors = VALUES * 0 + 0.05
    ax = plot_per_label_comparison(VALUES, errors=errors).axes[0]
    drawn = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(drawn) == 2
    segments = drawn[0].lines[2][0].get_segments()  # one vertical segment per bar
    assert np.allclose([s[1, 1] - s[0, 1] for s in segments], 0.1)
    ax_plain = plot_per_label_comparison(VALUES).axes[0]
    assert not [c for c in ax_plain.containers if isinstance(c, ErrorbarContainer)]


def legend_box(fig, ax):
    """The legend's bounding box in axes coordinates (0-1), after drawing the figure."""
    fig.canvas.draw()
    return ax.get_legend().get_window_extent().transformed(ax.transAxes.inverted())


@pytest.mark.parametrize(
    ("loc", "corner"), [("upper right", (1, 1)), ("lower left", (0, 0)), ("upper left", (0, 1))]
)
def test_legend_goes_to_the_corner_asked_for(loc, corner):
    fig = plot_per_label_comparison(VALUES, legend_loc=loc)
    box = legend_box(fig, fig.axes[0])
    x = box.x1 if corner[0] else box.x0
    y = box.y1 if corner[1] else box.y0
    assert x == pytest.approx(corner[0], abs=0.05)
    assert y == pytest.approx(corner[1], abs=0.05)


def test_default_legend_covers_no_bar():
    tall_head = pd.DataFrame(  # like chapter 6: high bars on the left, low ones on the right
        {m: [0.9] * 7 + [0.5, 0.3, 0.2] for m in ["BCE", "BCE + pos_weight", "focal", "ASL"]},
        index=pd.Index([str(d) for d in range(10)]),
    )
    fig = plot_per_label_comparison(tall_head)
    ax = fig.axes[0]
    box = legend_box(fig, ax)
    for bar in bars(ax):
        b = bar.get_window_extent().transformed(ax.transAxes.inverted())
        overlap = min(box.x1, b.x1) > max(box.x0, b.x0) and min(box.y1, b.y1) > max(box.y0, b.y0)
        assert not overlap, f"legend covers the bar at x = {bar.get_x():.2f}"
    assert box.x0 > 0.5 and box.y0 > 0.5  # it went to the empty upper right


def test_an_unknown_legend_loc_is_refused():
    with pytest.raises(ValueError, match="not a valid value for loc"):
        plot_per_label_comparison(VALUES, legend_loc="somewhere")
