"""Multi-label heads on one shared backbone: global max pooling, CSRA, and label queries.

Chapter 13 asks whether heads that pool *per class* (CSRA) or let *labels attend to each
other* (Query2Label, ML-Decoder) beat a plain, well-tuned pooling head. A fair comparison
needs the same backbone features under every head, so the backbone here is the SmallCNN's
convolutional trunk (``helpers.models.conv_block``) returning its feature map, and each head
maps a feature map ``(B, C, H, W)`` to logits ``(B, n_labels)``.

- ``GlobalMaxHead``: max over positions, then a linear layer; exactly the SmallCNN's head.
- ``CSRAHead``: Zhu & Wu, "Residual Attention: A Simple but Effective Method for Multi-Label
  Recognition", ICCV 2021; follows the official code (Kevinz-code/CSRA, pipeline/csra.py).
- ``LabelQueryHead``: learned label queries read the feature map through a
  ``torch.nn.TransformerDecoder`` (Liu et al., "Query2Label", arXiv 2021; Ridnik et al.,
  "ML-Decoder", WACV 2023), with Query2Label's group-wise linear output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helpers.models import SmallCNN, conv_block

__all__ = [
    "CSRAHead",
    "GlobalMaxHead",
    "HEADS",
    "LabelQueryHead",
    "MultiLabelNet",
    "SpatialBackbone",
    "count_parameters",
    "make_model",
    "sine_positions",
]


def _check_features(x: torch.Tensor, channels: int, who: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(
            f"{who} expects a feature map (B, {channels}, H, W), got shape {tuple(x.shape)}"
        )


class SpatialBackbone(nn.Module):
    """The SmallCNN's conv blocks, returning the feature map instead of pooling it.

    Same layers, same parameter names under ``features``: a SmallCNN's state dict loads
    into ``SpatialBackbone + GlobalMaxHead`` (see ``_from_small_cnn``).
    """

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: int = 3):
        super().__init__()
        channels = [in_channels] + [width * 2**i for i in range(blocks)]
        self.features = nn.Sequential(
            *(conv_block(channels[i], channels[i + 1]) for i in range(blocks))
        )
        self.out_channels = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class GlobalMaxHead(nn.Module):
    """Max over positions ("is the pattern anywhere?"), then one linear layer."""

    def __init__(self, in_channels: int, n_labels: int):
        super().__init__()
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.in_channels, "GlobalMaxHead")
        return self.fc(x.amax(dim=(2, 3)))


class CSRAHead(nn.Module):
    """Class-specific residual attention: mean-pooled class scores + lam * attention-pooled ones.

    A 1x1 convolution (no bias) gives each class a score at every position, divided by the
    norm of that class's weight vector, as in the official code. Then per class:
    ``logit = mean(scores) + lam * sum(softmax(T * scores) * scores)`` over positions.
    ``lam=0`` is average pooling; ``T -> inf`` makes the attention term a max over positions
    (the official code's ``T == 99`` switch; here ``temperature=math.inf``). The defaults,
    ``lam=0.1`` and one head with ``T=1``, are those of the official main.py.
    """

    def __init__(self, in_channels: int, n_labels: int, lam: float = 0.1, temperature: float = 1.0):
        super().__init__()
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        if not temperature > 0:
            raise ValueError(
                f"temperature must be > 0 (math.inf for max pooling), got {temperature}"
            )
        self.in_channels, self.lam, self.temperature = in_channels, lam, temperature
        self.classifier = nn.Conv2d(in_channels, n_labels, 1, bias=False)

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_labels, H*W): each class's normalised score at each position."""
        _check_features(x, self.in_channels, "CSRAHead")
        norm = self.classifier.weight.flatten(1).norm(dim=1)  # (n_labels,)
        return self.classifier(x).flatten(2) / norm[None, :, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.class_scores(x)
        base = score.mean(dim=2)
        if math.isinf(self.temperature):
            attention = score.amax(dim=2)
        else:
            attention = (score * torch.softmax(score * self.temperature, dim=2)).sum(dim=2)
        return base + self.lam * attention


def sine_positions(height: int, width: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine/cosine position codes (H*W, dim), DETR style: half for rows, half for columns.

    Attention ignores the order of its inputs; adding these codes to the feature tokens tells
    a query *where* a feature is. Fixed codes work for any feature-map size.
    """
    if dim % 4 != 0:
        raise ValueError(f"dim must be a multiple of 4 for 2-D sine positions, got {dim}")
    quarter = dim // 4
    freq = 1.0 / (10_000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    rows = torch.arange(height, dtype=torch.float32)[:, None] * freq  # (H, dim/4)
    cols = torch.arange(width, dtype=torch.float32)[:, None] * freq  # (W, dim/4)
    row_code = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(height, width, -1)
    col_code = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, width, -1)
    return torch.cat([row_code, col_code], dim=2).reshape(height * width, dim)


class LabelQueryHead(nn.Module):
    """One learned query per label reads the feature map through a transformer decoder.

    As in Query2Label: a 1x1 convolution projects the features to ``d_model``, position codes
    are added, the queries (``nn.Embedding``) attend to each other (self-attention: where
    label correlations can be learned) and to the feature tokens (cross-attention: where to
    look), and a *group-wise* linear layer scores query c with its own weight vector W[c]
    and bias b[c]. Query2Label adds the position codes inside every attention layer; with
    ``nn.TransformerDecoder`` they are added once to the feature tokens.
    """

    def __init__(
        self,
        in_channels: int,
        n_labels: int,
        d_model: int = 64,
        n_heads: int = 4,
        layers: int = 1,
        ff_dim: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.in_channels, self.n_labels, self.d_model = in_channels, n_labels, d_model
        self.input_proj = nn.Conv2d(in_channels, d_model, 1)
        self.queries = nn.Embedding(n_labels, d_model)
        layer = nn.TransformerDecoderLayer(d_model, n_heads, ff_dim, dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.weight = nn.Parameter(torch.empty(n_labels, d_model))
        self.bias = nn.Parameter(torch.empty(n_labels))
        bound = 1 / math.sqrt(d_model)  # Query2Label's GroupWiseLinear initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H*W, d_model): projected features plus position codes, the decoder's memory."""
        _check_features(x, self.in_channels, "LabelQueryHead")
        _, _, h, w = x.shape
        pos = sine_positions(h, w, self.d_model).to(x.device, x.dtype)
        return self.input_proj(x).flatten(2).transpose(1, 2) + pos

    def decode(self, memory: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_labels) from memory tokens (B, N, d_model): queries, decoder, scores."""
        if memory.ndim != 3 or memory.shape[2] != self.d_model:
            raise ValueError(f"memory must be (B, N, {self.d_model}), got {tuple(memory.shape)}")
        queries = self.queries.weight.unsqueeze(0).expand(len(memory), -1, -1)
        hidden = self.decoder(queries, memory)  # (B, n_labels, d_model)
        return (hidden * self.weight).sum(-1) + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.tokens(x))


class MultiLabelNet(nn.Module):
    """A backbone and a head: ``head(backbone(x))``, logits of shape (B, n_labels)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


HEADS = ("global max", "CSRA", "label queries")


def make_model(
    head: str,
    n_labels: int = 10,
    in_channels: int = 1,
    width: int = 16,
    blocks: int = 3,
    **head_kwargs,
) -> MultiLabelNet:
    """The shared SmallCNN trunk with the named head (one of ``HEADS``).

    Extra keywords go to the head, e.g. ``lam`` for CSRA or ``d_model`` for label queries.
    """
    backbone = SpatialBackbone(in_channels, width, blocks)
    c = backbone.out_channels
    if head == "global max":
        return MultiLabelNet(backbone, GlobalMaxHead(c, n_labels, **head_kwargs))
    if head == "CSRA":
        return MultiLabelNet(backbone, CSRAHead(c, n_labels, **head_kwargs))
    if head == "label queries":
        return MultiLabelNet(backbone, LabelQueryHead(c, n_labels, **head_kwargs))
    raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")


def _from_small_cnn(model: SmallCNN) -> MultiLabelNet:
    """The same network as a SmallCNN, rebuilt as backbone + ``GlobalMaxHead`` (same weights)."""
    features = model.features
    in_channels = features[0][0].in_channels
    width = features[0][0].out_channels
    net = make_model("global max", model.head.out_features, in_channels, width, len(features))
    net.backbone.features.load_state_dict(features.state_dict())
    net.head.fc.load_state_dict(model.head.state_dict())
    return net


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters: the size a head adds, for the comparison table."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
