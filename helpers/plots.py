"""Figures the chapters reuse. Each returns the matplotlib Figure; notebooks end the cell
with ``plt.show()`` so no object repr is stored in the page.

Plots only draw: thresholds are applied by :func:`helpers.labels.apply_thresholds` and
every number drawn is computed by :mod:`helpers.metrics` (AP, precision, recall, F1), so a
figure shows exactly what the tables report."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from helpers.labels import apply_thresholds, check_scores_and_targets, check_targets
from helpers.metrics import average_precisions, f1_by_threshold, precision_recall_f1

__all__ = [
    "plot_confusion_matrices",
    "plot_cooccurrence",
    "plot_f1_vs_threshold",
    "plot_history",
    "plot_label_frequency",
    "plot_per_label_comparison",
    "plot_pr_curves",
    "show_batch",
    "show_images",
]


def show_images(
    images: torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.4,
    cmap: str = "gray_r",
    frame: bool = False,
):
    """A grid of images (N, C, H, W) or (N, H, W) with an optional title above each.

    ``frame=True`` draws a thin grey border round each image: white-background images
    (such as digits on ``gray_r``) otherwise run into each other and their edges vanish.
    """
    images = torch.as_tensor(images).detach().cpu()
    if images.ndim == 4:
        images = images.permute(0, 2, 3, 1)
        if images.shape[-1] == 1:
            images = images[..., 0]
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * size, nrows * (size + 0.3)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(images[i].numpy(), cmap=cmap if images[i].ndim == 2 else None)
        if frame:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.7")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig


def show_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    vocab: Sequence[str],
    probs: torch.Tensor | None = None,
    threshold: float = 0.5,
    ncols: int = 8,
    size: float = 1.4,
    cmap: str = "gray_r",
):
    """A grid of images with the names of their labels written under each one.

    ``targets`` are multi-hot rows; with ``probs`` (sigmoid outputs) a second line shows
    the labels predicted at ``threshold`` (:func:`helpers.labels.apply_thresholds`). An
    image with no labels reads "(none)", so an empty target is visible rather than a blank
    caption.
    """

    def names(row) -> str:
        on = torch.nonzero(row).flatten().tolist()
        return " ".join(str(vocab[j]) for j in on) or "(none)"

    targets = torch.as_tensor(targets).detach().cpu()
    if targets.ndim != 2 or targets.shape[1] != len(vocab) or len(targets) != len(images):
        raise ValueError(
            f"targets must be ({len(images)}, {len(vocab)}) for {len(images)} images and "
            f"{len(vocab)} labels; got {tuple(targets.shape)}"
        )
    captions = [names(row) for row in check_targets(targets, vocab=vocab)]
    if probs is not None:
        predicted = [names(row) for row in apply_thresholds(probs, threshold)]
        captions = [f"true {t}\npred {p}" for t, p in zip(captions, predicted, strict=True)]
    fig = show_images(images, ncols=ncols, size=size, cmap=cmap, frame=True)
    lines = 2 if probs is not None else 1
    fig.set_size_inches(fig.get_size_inches() + np.array([0, 0.2 * lines * len(fig.axes) / ncols]))
    for ax, caption in zip(fig.axes[: len(captions)], captions, strict=True):
        ax.set_xlabel(caption, fontsize=9)
    fig.tight_layout()
    return fig


def plot_label_frequency(freq: pd.DataFrame, title: str = "How often each label occurs"):
    """Horizontal bars from :func:`helpers.labels.label_frequency`'s table."""
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(freq) + 1))
    ax.barh(freq["label"].astype(str), freq["fraction"], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("fraction of images with the label")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_cooccurrence(
    counts: pd.DataFrame,
    normalize: bool = True,
    title: str | None = None,
    mask_diagonal: bool = False,
):
    """Heatmap of a co-occurrence table; normalised rows read as P(column | row).

    ``mask_diagonal=True`` leaves the diagonal blank (it is each label's own count, or 1
    when normalised), so the colour scale spans only the off-diagonal values and their
    spread becomes visible.
    """
    values = counts.to_numpy().astype(float)
    if normalize:
        values = values / np.maximum(np.diag(values)[:, None], 1)
    if mask_diagonal:
        values[np.eye(len(values), dtype=bool)] = np.nan  # NaN cells are drawn blank
    fig, ax = plt.subplots(figsize=(0.45 * len(counts) + 2, 0.45 * len(counts) + 1.5))
    im = ax.imshow(values, cmap="viridis")
    ax.set_xticks(range(len(counts)), counts.columns, rotation=90)
    ax.set_yticks(range(len(counts)), counts.index)
    ax.set_xlabel("label j")
    ax.set_ylabel("label i")
    ax.set_title(title or ("P(j present | i present)" if normalize else "images with both i and j"))
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_confusion_matrices(
    targets, predictions, vocab: Sequence[str], ncols: int = 5, title: str | None = None
):
    """One 2x2 confusion matrix per label (rows: true no/yes, columns: predicted no/yes).

    Small multiples from ``sklearn.metrics.multilabel_confusion_matrix``; each cell shows
    its count. The colour is the count divided by its row's total (the share of true "no"
    or true "yes" images that land there): with raw counts the many true negatives would
    make every error cell look empty. The false negatives (bottom left) and false positives
    (top right) of each label are what a threshold trades against each other.
    """
    from sklearn.metrics import multilabel_confusion_matrix

    y = check_targets(targets, vocab=vocab)
    cms = multilabel_confusion_matrix(
        y.numpy(), check_targets(predictions, y.shape, "predictions", vocab=vocab).numpy()
    )
    nrows = int(np.ceil(len(vocab) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2 * ncols, 2.1 * nrows + 0.4), squeeze=False)
    for ax in axes.flat[len(vocab) :]:
        ax.axis("off")
    for ax, name, m in zip(axes.flat, vocab, cms, strict=False):
        rates = m / np.maximum(m.sum(1, keepdims=True), 1)  # row-normalised: rate per true class
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
            )
        ax.set_title(f"label {name}", fontsize=10)
        ax.set_xticks([0, 1], ["no", "yes"])
        ax.set_yticks([0, 1], ["no", "yes"])
    fig.supxlabel("predicted")
    fig.supylabel("true")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _label_grid(n: int, ncols: int, size: float, **kwargs):
    """A grid of small panels, one per label; the panels past the last label are hidden."""
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + 0.6), squeeze=False, **kwargs
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def _operating_points(probs, targets, operating_points: dict | None) -> dict:
    """Per named threshold setting: (recall, precision) of each label, decided by
    :func:`helpers.labels.apply_thresholds` and counted by
    :func:`helpers.metrics.precision_recall_f1`, as in every report."""
    points = {}
    for name, t in (operating_points or {}).items():
        prf = precision_recall_f1(targets, apply_thresholds(probs, t))
        points[name] = (prf["recall"], prf["precision"])
    return points


def plot_pr_curves(
    probs,
    targets,
    vocab: Sequence[str],
    operating_points: dict | None = None,
    ncols: int = 5,
    zoom: float | None = None,
):
    """Precision-recall curve of each label, with the points that thresholds pick on it.

    `operating_points` maps a name to thresholds (one number, or one per label); each is
    drawn as a marker where that threshold lands on the label's curve. The title gives
    the label's average precision (:func:`helpers.metrics.average_precisions`). ``zoom=0.7``
    shows only recall and precision from 0.7 to 1, the corner where a good model's
    operating points lie.
    """
    from sklearn.metrics import precision_recall_curve

    probs, y = check_scores_and_targets(probs, targets, vocab=vocab)
    ap = average_precisions(probs, y, vocab=vocab)
    points = _operating_points(probs, y, operating_points)
    fig, axes = _label_grid(len(vocab), ncols, 2.3, sharex=True, sharey=True)
    markers = ["o", "s", "^", "D", "v"]
    for j, (ax, name) in enumerate(zip(axes.flat, vocab, strict=False)):
        precision, recall, _ = precision_recall_curve(y[:, j].numpy(), probs[:, j].numpy())
        ax.step(recall, precision, where="post", color="tab:blue", lw=1.2)
        for k, (point, (rec, prec)) in enumerate(points.items()):
            marker = markers[k % len(markers)]
            ax.plot(rec[j], prec[j], marker, color=f"C{k + 1}", label=point, ms=5)
        ax.set_title(f"label {name}: AP {ap[j]:.3f}", fontsize=9)
        ax.grid(alpha=0.3)
        if zoom is not None:
            ax.set_xlim(zoom, 1.01)
            ax.set_ylim(zoom, 1.01)
    fig.supxlabel("recall")
    fig.supylabel("precision")
    if points:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(points), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.92))
    else:
        fig.tight_layout()
    return fig


def plot_per_label_comparison(
    values: pd.DataFrame,
    highlight: Sequence[str] = (),
    errors: pd.DataFrame | None = None,
    ylabel: str = "average precision",
    title: str | None = None,
    legend_loc: str = "best",
):
    """Grouped bars: one group per label (rows of `values`), one bar per method (columns).

    Labels in `highlight` (e.g. the rare ones) get a shaded background, so a reader sees at
    once whether a method changes the labels it was meant to help. `errors` (same shape,
    optional) draws error bars, e.g. the spread over seeds. `legend_loc` is matplotlib's
    `loc`: "best" avoids the bars in most figures; name a corner where it does not.
    """
    labels = [str(i) for i in values.index]
    n_methods = values.shape[1]
    width = 0.8 / n_methods
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(labels) + 2), 3.6))
    for i, label in enumerate(labels):
        if label in {str(h) for h in highlight}:
            ax.axvspan(i - 0.5, i + 0.5, color="0.9", zorder=0, gid="highlight")
    for k, method in enumerate(values.columns):
        ax.bar(
            x - 0.4 + width * (k + 0.5),
            values[method].to_numpy(),
            width,
            yerr=None if errors is None else errors[method].to_numpy(),
            capsize=2,
            label=str(method),
            color=f"C{k}",
            zorder=2,
        )
    ax.set_xticks(x, labels)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    shaded = ", ".join(map(str, highlight))
    ax.set_xlabel(f"label (shaded: {shaded})" if highlight else "label")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(ncols=min(n_methods, 2), fontsize=8, loc=legend_loc)
    ax.grid(axis="y", alpha=0.3, zorder=1)
    fig.tight_layout()
    return fig


def plot_history(history: pd.DataFrame, title: str = "Training history"):
    """Losses (left) and validation mAP (right) per epoch, from :func:`helpers.train.fit`.

    Train and validation loss on one axis show over- or under-fitting at a glance: the
    validation curve turning up while the training curve keeps falling means overfitting.
    """
    missing = {"train_loss", "val_loss", "val_mAP"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks column(s) {sorted(missing)}; pass fit's DataFrame")
    epochs = history.index.to_numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, history["train_loss"], "o-", label="train")
    left.plot(epochs, history["val_loss"], "s-", label="validation")
    left.set_ylabel("BCE loss")
    left.legend()
    right.plot(epochs, history["val_mAP"], "o-", color="tab:green")
    right.set_ylabel("validation mAP")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _threshold_ticks(ax, per_label: dict, first_colour: int) -> None:
    """Per-label thresholds as short ticks along the bottom of `ax`, one colour per name."""
    for k, (name, ts) in enumerate(per_label.items()):
        values = torch.as_tensor(ts, dtype=torch.float32).flatten().numpy()
        ax.plot(
            values,
            np.zeros_like(values),
            "|",
            color=f"C{first_colour + k}",
            ms=14,
            mew=1.5,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label=name,
        )


def plot_f1_vs_threshold(
    splits: dict,
    marks: dict | None = None,
    per_label: dict | None = None,
    thresholds=None,
):
    """Micro F1 (left) and macro F1 (right) against one threshold shared by all labels.

    `splits` maps a name ("validation", "test") to ``(probs, targets)``; each becomes one
    curve per panel, computed by :func:`helpers.metrics.f1_by_threshold`. `marks` maps a
    name to one global threshold (the 0.5 default, a tuned one), drawn as a vertical line
    in both panels.
    Per-label thresholds have no single place on this axis: `per_label` maps a name to one
    threshold per label, drawn as short ticks along the bottom, so a reader sees how far
    they spread. Seeing validation and test side by side shows how flat F1 is near its top
    and how far the validation optimum lies from the test one.
    """
    curves = {name: f1_by_threshold(p, t, thresholds) for name, (p, t) in splits.items()}
    marks = marks or {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    styles = ["-", "--", ":", "-."]
    for ax, average in zip(axes, ("micro", "macro"), strict=True):
        for k, (name, curve) in enumerate(curves.items()):
            style = styles[k % len(styles)]
            ax.plot(curve.index, curve[average], style, color=f"C{k}", lw=1.5, label=name,
                    gid=f"{name}/{average}")  # fmt: skip
        for k, (name, t) in enumerate(marks.items()):
            ax.axvline(float(t), color=f"C{k + len(curves)}", lw=1, ls="--", label=name)
        _threshold_ticks(ax, per_label or {}, len(curves) + len(marks))
        ax.set_title(f"{average} F1")
        ax.set_xlabel("threshold (one for all labels)")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("F1")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 3), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.84))
    return fig
