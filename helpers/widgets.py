"""Interactive explorers for Jupyter and Colab: thresholds, one image's prediction, and
precision promises.

Moving a threshold trades precision for recall. The threshold explorer shows that trade
live: one global slider or one slider per label, and under them precision, recall and F1
per label plus a few example images' predicted label sets. The prediction explorer shows
one image's probabilities against its thresholds; the promise explorer, what thresholds
chosen on validation keep on test.

Widgets only draw: the numbers come from the modules that compute them
(:func:`helpers.metrics.threshold_report`, :func:`helpers.predict.prediction_table`,
:func:`helpers.calibration.precision_promise_table`), called again while a slider moves.
The ``*_view`` functions gather what a widget shows and need no browser (the tests call
them directly); a chapter reports and glues numbers from the computing modules, never
from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from helpers.labels import apply_thresholds, check_targets, per_label_thresholds
from helpers.metrics import threshold_report

__all__ = [
    "ExplorerView",
    "PredictionView",
    "LiveOrSnapshot",
    "explorer_view",
    "plot_prediction",
    "precision_promise_explorer",
    "prediction_explorer",
    "prediction_view",
    "render_html",
    "render_prediction_html",
    "render_promise_html",
    "threshold_explorer",
]


# ipywidgets draws each toggle button 72 px wide and cuts longer labels short:
# size the buttons to their labels instead.
_WHOLE_LABELS = {"button_width": "auto"}


@dataclass
class LiveOrSnapshot:
    """A widget shown once: live where a kernel runs, as its static snapshot on the site.

    Its output carries both the widget and `html`, the snapshot of the widget's opening
    view. Jupyter and Colab render the richer widget and ignore the HTML; the built book
    (``nb_mime_priority_overrides`` in ``_config.yml``) never renders widget views, so it
    shows the snapshot, with no widget scripts to fetch from a CDN.
    """

    widget: object  # an ipywidgets widget
    html: str

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude))
        bundle["text/html"] = self.html
        return bundle


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
    Decisions are :func:`helpers.labels.apply_thresholds`, as in every report; bad input
    is refused by :func:`helpers.metrics.threshold_report` with the same messages.
    """
    table = threshold_report(probs, targets, vocab, thresholds)  # checks everything first
    targets = check_targets(targets)
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
    return ExplorerView(table, examples)


def render_html(view: ExplorerView) -> str:
    """The view as HTML: the metrics table, then the example predictions."""
    table = view.table.to_html(float_format=lambda v: f"{v:.3f}", na_rep="")
    return (
        "<b>Precision, recall and F1 per label</b>"
        + table
        + "<br><b>Example images</b>"
        + view.examples.to_html()
    )


def _threshold_sliders(thresholds, vocab: Sequence[str]):
    """One slider for all labels and one per label, started at `thresholds` (rounded to the
    sliders' 0.01 steps); they update when released, so a slow kernel is not flooded."""
    import ipywidgets as w

    start = per_label_thresholds(thresholds, len(vocab))
    slider = {"min": 0.0, "max": 1.0, "step": 0.01, "continuous_update": False}
    global_slider = w.FloatSlider(
        value=round(float(start.mean()), 2), description="all labels", **slider
    )
    label_sliders = [
        w.FloatSlider(value=round(float(start[j]), 2), description=f"label {name}", **slider)
        for j, name in enumerate(vocab)
    ]
    return global_slider, label_sliders


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

    per_label = torch.as_tensor(thresholds).ndim == 1
    global_slider, label_sliders = _threshold_sliders(thresholds, vocab)
    mode = w.ToggleButtons(
        options=["one global threshold", "one per label"],
        style=_WHOLE_LABELS,
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


# --- A prediction explorer: one image, each label's probability and threshold ------------------


@dataclass
class PredictionView:
    """What the prediction explorer shows for one image and one threshold setting."""

    source: str  # the file's name
    vocab: list[str]  # label order of the bars
    image: torch.Tensor | None  # the model's input, un-normalised to [0, 1] (C, H, W)
    table: pd.DataFrame | None  # helpers.predict.prediction_table: most probable first
    error: str = ""  # why the file could not be used ("" if it could)


def prediction_view(classifier, source, name: str | None = None, threshold=None) -> PredictionView:
    """Predict one image (path or uploaded bytes) for the explorer; needs no browser.

    ``threshold=None`` uses the classifier's tuned per-label thresholds, a number one
    threshold for every label. A file that cannot be used gives a view holding its error
    message rather than an exception: the explorer must survive a bad upload.
    """
    from pathlib import Path

    from helpers.predict import open_image, predict_tensor, prediction_table

    shown = name or (Path(source).name if isinstance(source, (str, Path)) else "uploaded file")
    try:
        x = open_image(source, classifier.preprocessing, name=shown)
    except (OSError, ValueError) as err:
        return PredictionView(shown, list(classifier.vocab), None, None, str(err))
    probs = predict_tensor(classifier, x.unsqueeze(0))[0]
    t = classifier.thresholds if threshold is None else threshold
    prep = classifier.preprocessing
    image = x * torch.tensor(prep.std).view(-1, 1, 1) + torch.tensor(prep.mean).view(-1, 1, 1)
    table = prediction_table(probs, classifier.vocab, t)
    return PredictionView(shown, list(classifier.vocab), image.clamp(0, 1), table)


def plot_prediction(view: PredictionView):
    """The image as the model sees it (left) and one bar per label (right).

    Bars stay in vocabulary order, so they do not jump while a threshold moves; a black tick
    on each bar marks that label's threshold, and predicted labels are drawn in colour.
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(6.9, 0.28 * len(view.vocab) + 1.2), width_ratios=[1, 1.6]
    )
    left.axis("off")
    if view.error:
        left.text(0, 0.5, "cannot use this file", color="tab:red", va="center")
        right.axis("off")
        fig.suptitle(view.source, fontsize=10)
        fig.tight_layout()
        return fig
    img = view.image.permute(1, 2, 0).squeeze(-1).numpy()
    left.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    left.set_title(f"{view.source} (model input)", fontsize=9)
    table = view.table.loc[view.vocab]
    y = range(len(table))
    colours = ["tab:blue" if p else "0.75" for p in table["predicted"]]
    right.barh(y, table["probability"], color=colours, height=0.7)
    right.vlines(table["threshold"], [i - 0.45 for i in y], [i + 0.45 for i in y], color="k", lw=2)
    right.set_yticks(list(y), [f"label {v}" for v in table.index])
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("probability (black tick: threshold)")
    predicted = " ".join(view.table.index[view.table["predicted"]]) or "(none)"
    right.set_title(f"predicted: {predicted}", fontsize=10)
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def render_prediction_html(view: PredictionView) -> str:
    """The view's numbers as HTML: the error, or the predicted labels and the full table."""
    import html

    if view.error:
        return f'<b style="color:#b00">{html.escape(view.error)}</b>'
    predicted = view.table[view.table["predicted"]]
    summary = ", ".join(f"{k} ({p:.3f})" for k, p in predicted["probability"].items()) or "none"
    table = view.table.to_html(float_format=lambda v: f"{v:.3f}")
    return f"<b>{html.escape(view.source)}: predicted {html.escape(summary)}</b>{table}"


def prediction_explorer(classifier, images: dict, threshold: float = 0.5):
    """A widget: pick a test image (Dropdown) or upload one (FileUpload), see each label's
    probability and threshold, and switch from the tuned thresholds to one slider.

    `images` maps a name to an image file. The figure is drawn with matplotlib into a PNG
    shown by an ``Image`` widget, so the widget works wherever ipywidgets' own widgets do.
    """
    import io

    import ipywidgets as w
    import matplotlib.pyplot as plt

    picker = w.Dropdown(options=list(images), description="test image")
    upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
    mode = w.ToggleButtons(options=["tuned per label", "one for all labels"], style=_WHOLE_LABELS)
    slider = w.FloatSlider(
        value=threshold, min=0.0, max=1.0, step=0.01, description="threshold",
        continuous_update=False, disabled=True,
    )  # fmt: skip
    figure, text = w.Image(format="png"), w.HTML()
    current = {"source": images[picker.value] if images else None, "name": picker.value}

    def update(_=None):
        slider.disabled = mode.value == "tuned per label"
        t = None if slider.disabled else slider.value
        if current["source"] is None:
            return
        view = prediction_view(classifier, current["source"], current["name"], t)
        fig = plot_prediction(view)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        figure.value, text.value = buffer.getvalue(), render_prediction_html(view)

    def picked(change):
        current.update(source=images[change["new"]], name=change["new"])
        update()

    def uploaded(change):
        if change["new"]:  # ipywidgets 8: a tuple of dicts with "name" and "content"
            file = change["new"][-1]
            current.update(source=bytes(file["content"]), name=file["name"])
            update()

    picker.observe(picked, names="value")
    upload.observe(uploaded, names="value")
    mode.observe(update, names="value")
    slider.observe(update, names="value")
    update()
    return w.VBox([w.HBox([picker, upload]), w.HBox([mode, slider]), figure, text])


# --- A precision-promise explorer: thresholds chosen on validation, checked on test ------------


def render_promise_html(table: pd.DataFrame, target: float, confidence: float | None) -> str:
    """The promise table as HTML under a one-line summary (labels kept, mean recall)."""
    rule = (
        "naive: validation precision ≥ target"
        if confidence is None
        else f"Clopper-Pearson {confidence:.0%} lower bound ≥ target"
    )
    kept = int(table["promise kept"].sum())
    summary = (
        f"<b>target precision {target:.2f} ({rule}): promise kept on test for {kept} of "
        f"{len(table)} labels; mean test recall {table['test recall'].mean():.3f}</b>"
    )
    shown = table.assign(
        threshold=[f"{t:.3f}" if t != float("inf") else "never" for t in table["threshold"]]
    )
    return summary + shown.to_html(float_format=lambda v: f"{v:.3f}", na_rep="-")


def precision_promise_explorer(
    val_probs,
    val_targets,
    test_probs,
    test_targets,
    vocab: Sequence[str],
    target: float = 0.95,
    confidence: float = 0.95,
):
    """A widget: a target-precision slider and a choice of rule (naive or Clopper-Pearson at
    `confidence`), showing each label's threshold, test precision and recall.

    The slider moves in 0.01 steps from 0.50 to 0.99 and updates when released; each move
    recomputes :func:`helpers.calibration.precision_promise_table`.
    """
    import ipywidgets as w

    from helpers.calibration import precision_promise_table

    slider = w.FloatSlider(
        value=round(target, 2), min=0.5, max=0.99, step=0.01, description="target",
        continuous_update=False,
    )  # fmt: skip
    rules = {"naive": None, f"Clopper-Pearson {confidence:.0%}": confidence}
    rule = w.ToggleButtons(options=list(rules), style=_WHOLE_LABELS)
    output = w.HTML()

    def update(_=None):
        c = rules[rule.value]
        table = precision_promise_table(
            val_probs, val_targets, test_probs, test_targets, vocab, slider.value, c
        )
        output.value = render_promise_html(table, slider.value, c)

    slider.observe(update, names="value")
    rule.observe(update, names="value")
    update()
    return w.VBox([w.HBox([slider, rule]), output])
