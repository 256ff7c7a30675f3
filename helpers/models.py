"""Models the chapters train: a small CNN, and torchvision ResNets with a multi-label head."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from helpers.env import reachable, shown_path
from helpers.pins import OFFLINE_ENV, offline

__all__ = [
    "SmallCNN",
    "WEIGHTS_HOST",
    "WeightsUnavailableError",
    "conv_block",
    "pretrained_state_dict",
    "resnet_multilabel",
    "weights_file",
]


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


# --- ResNets from torchvision, with their ImageNet weights (chapters 7-9) -----------------

WEIGHTS_HOST = "download.pytorch.org"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither on disk nor downloadable from here."""


def weights_file(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps (or would keep) the file of `weights`: <hub dir>/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def pretrained_state_dict(arch: str, weights: str = "DEFAULT", timeout: float = 2.0) -> dict:
    """The ImageNet state dict of torchvision's `arch` (e.g. "resnet50"), from disk or the web.

    torchvision downloads weights into the torch.hub folder on first use and reads them from
    there afterwards. Without a network that first download fails, sometimes only after a
    long wait; here it fails within `timeout` seconds and says which file to fetch and where
    to put it. Files are loaded with ``weights_only=True``.
    """
    enum = torchvision.models.get_model_weights(arch)
    chosen = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    path = weights_file(chosen)
    if offline():  # stored runs and CI: not even a cached file, so every machine agrees
        raise WeightsUnavailableError(
            f"{arch} weights {chosen} are not used: {OFFLINE_ENV}=1 pins this run to no "
            "downloaded weights (the book's stored runs and CI set it). Unset it to use "
            f"{chosen.url}, or build the model with weights=None."
        )
    if not path.exists():
        reason = reachable(WEIGHTS_HOST, timeout)
        if reason is not None:
            raise WeightsUnavailableError(
                f"{arch} weights {chosen} are not on disk and {WEIGHTS_HOST} cannot be "
                f"reached ({reason}). Download {chosen.url} on a machine with internet and "
                f"put it at {shown_path(path)} (the torch.hub folder; TORCH_HOME moves it), or "
                "build the model with weights=None to train from random initialisation."
            )
    return chosen.get_state_dict(progress=False, check_hash=True, weights_only=True)


def resnet_multilabel(
    arch: str = "resnet50",
    n_labels: int = 20,
    weights: str | None = "DEFAULT",
    pool: str = "avg",
) -> nn.Module:
    """A torchvision ResNet with one logit per label, ImageNet weights unless ``weights=None``.

    The 1000-class ImageNet head is replaced by a fresh ``Linear(features, n_labels)``; the
    rest keeps its pretrained weights. ``pool="max"`` swaps global average pooling for global
    max pooling, which suits "is this object anywhere?" questions: the ML-GCN authors report
    93.0 vs 91.7 VOC 2007 mAP for a ResNet-101 at 448 px (see the references page).
    """
    if pool not in ("avg", "max"):
        raise ValueError(f"pool must be 'avg' or 'max', not {pool!r}")
    model = torchvision.models.get_model(arch, weights=None)
    if weights is not None:
        model.load_state_dict(pretrained_state_dict(arch, weights))
    model.fc = nn.Linear(model.fc.in_features, n_labels)
    if pool == "max":
        model.avgpool = nn.AdaptiveMaxPool2d(1)
    return model
