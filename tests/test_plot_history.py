import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers.plots import plot_history  # noqa: E402


def history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "train_loss": [0.5, 0.2, 0.1],
            "val_loss": [0.4, 0.25, 0.3],
            "val_mAP": [0.8, 0.9, 0.95],
            "lr": [1e-3, 5e-4, 1e-7],
            "seconds": [1.0, 1.0, 1.0],
        },
        index=pd.Index([1, 2, 3], name="epoch"),
    )


def test_plot_history_draws_the_losses_and_map_per_epoch():
    fig = plot_history(history())
    left, right = fig.axes
    lines = {line.get_label(): line for line in left.get_lines()}
    np.testing.assert_array_equal(lines["train"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines["train"].get_ydata(), [0.5, 0.2, 0.1])
    np.testing.assert_array_equal(lines["validation"].get_ydata(), [0.4, 0.25, 0.3])
    (map_line,) = right.get_lines()
    np.testing.assert_array_equal(map_line.get_ydata(), [0.8, 0.9, 0.95])
    assert list(left.get_xticks()) == [1, 2, 3]
    assert right.get_ylabel() == "validation mAP"
    plt.close(fig)


def test_plot_history_says_which_columns_are_missing():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['val_mAP'\]"):
        plot_history(history().drop(columns="val_mAP"))
