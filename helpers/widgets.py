"""An interactive threshold explorer for Jupyter and Colab.

Moving a threshold trades precision for recall. The explorer shows that trade live: one
global slider or one slider per label, and under them precision, recall and F1 per label
plus a few example images' predicted label sets.

The numbers come from :func:`explorer_view`, a plain function that needs no browser (the
tests call it directly); :func:`threshold_explorer` only wires sliders to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from helpers.metrics import apply_thresholds, threshold_report


@dataclass
class ExplorerView:
    """What the explorer shows for one setting of the thresholds."""

    table: pd.DataFrame  # per label and micro/macro: threshold, support, precision, recall, F1
    examples: pd.DataFrame  # per example image: true and predicted label sets, misses


def _names(row: torch.Tensor, vocab: Sequence[str]) -> str:
    return " ".join(vocab[j] for j in torch.nonzero(row).flatten().tolist()) or "-"


def explorer_view(
    probs: torch.Tensor,
    targets: torch.Tensor,
    vocab: Sequence[str],
    thresholds=0.5,
    n_examples: int = 8,
) -> ExplorerView:
    """Per-label metrics at `thresholds` and the first `n_examples` images' label sets.

    ``missed`` lists true labels not predicted (false negatives), ``extra`` predicted labels
    that are not there (false positives).
    """
    targets = torch.as_tensor(targets).long()
    pred = apply_thresholds(probs, thresholds)
    rows = []
    for i in range(min(n_examples, len(targets))):
        t, p = targets[i], pred[i]
        rows.append(
            {
                "true": _names(t, vocab),
                "predicted": _names(p, vocab),
                "missed": _names(t & (1 - p), vocab),
                "extra": _names(p & (1 - t), vocab),
            }
        )
    examples = pd.DataFrame(rows, index=pd.Index(range(len(rows)), name="image"))
    return ExplorerView(threshold_report(probs, targets, vocab, thresholds), examples)


def render_html(view: ExplorerView) -> str:
    """The view as HTML: the metrics table, then the example predictions."""
    table = view.table.to_html(float_format=lambda v: f"{v:.3f}", na_rep="")
    return (
        "<b>Precision, recall and F1 per label</b>"
        + table
        + "<br><b>Example images</b>"
        + view.examples.to_html()
    )


def threshold_explorer(
    probs: torch.Tensor,
    targets: torch.Tensor,
    vocab: Sequence[str],
    thresholds=0.5,
    n_examples: int = 8,
):
    """A widget: a toggle (one global threshold / one per label), sliders, and the live view.

    `thresholds` sets the sliders' start: one number starts in global mode, one per label
    starts in per-label mode. Start values are rounded to the sliders' 0.01 steps, so a
    static snapshot of the opening view must use the rounded values too. Sliders update
    when released (``continuous_update=False``) so a slow kernel is not flooded with
    recomputations.
    """
    import ipywidgets as w

    start = torch.as_tensor(thresholds, dtype=torch.float32)
    per_label = start.ndim == 1
    slider = {"min": 0.0, "max": 1.0, "step": 0.01, "continuous_update": False}
    global_slider = w.FloatSlider(
        value=round(float(start.mean()), 2), description="all labels", **slider
    )
    label_sliders = [
        w.FloatSlider(
            value=round(float(start[j] if per_label else start), 2),
            description=f"label {name}",
            **slider,
        )
        for j, name in enumerate(vocab)
    ]
    mode = w.ToggleButtons(
        options=["one global threshold", "one per label"],
        value="one per label" if per_label else "one global threshold",
    )
    label_box = w.GridBox(label_sliders, layout=w.Layout(grid_template_columns="repeat(2, 50%)"))
    output = w.HTML()

    def update(_=None):
        if mode.value == "one global threshold":
            current = global_slider.value
            global_slider.layout.display, label_box.layout.display = None, "none"
        else:
            current = torch.tensor([s.value for s in label_sliders])
            global_slider.layout.display, label_box.layout.display = "none", None
        output.value = render_html(explorer_view(probs, targets, vocab, current, n_examples))

    for control in [mode, global_slider, *label_sliders]:
        control.observe(update, names="value")
    update()
    return w.VBox([mode, global_slider, label_box, output])
