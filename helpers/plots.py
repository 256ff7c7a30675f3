"""Figures the chapters reuse. Each returns the matplotlib Figure; notebooks end the cell
with ``plt.show()`` so no object repr is stored in the page."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch


def show_images(
    images: torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.4,
    cmap: str = "gray_r",
):
    """A grid of images (N, C, H, W) or (N, H, W) with an optional caption under each."""
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
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
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


def plot_cooccurrence(counts: pd.DataFrame, normalize: bool = True, title: str | None = None):
    """Heatmap of a co-occurrence table; normalised rows read as P(column | row)."""
    values = counts.to_numpy().astype(float)
    if normalize:
        values = values / np.maximum(np.diag(values)[:, None], 1)
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
