"""Models the chapters train. Bigger ones (ResNets) come from torchvision directly."""

from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU, then halve the resolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCNN(nn.Module):
    """Conv blocks (three by default), global max pooling, one linear layer: one logit per label.

    Max pooling over positions asks "does this pattern occur anywhere?", which is exactly
    the multi-label question for objects (here: digits) that can sit anywhere in the image.
    The output is raw logits: pair it with ``BCEWithLogitsLoss`` and ``torch.sigmoid``.

    Each block doubles the channels and halves the resolution. ``blocks`` sets how far one
    output position sees (its receptive field): 22 px with 3 blocks, 46 px with 4, so only
    4 blocks see a whole 28 px digit at once.
    """

    def __init__(self, n_labels: int = 10, in_channels: int = 1, width: int = 32, blocks: int = 3):
        super().__init__()
        channels = [in_channels] + [width * 2**i for i in range(blocks)]
        self.features = nn.Sequential(
            *(conv_block(channels[i], channels[i + 1]) for i in range(blocks))
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(channels[-1], n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))
