"""Multi-label heads on one shared backbone: global max pooling, CSRA, and label queries.

Chapter 13 asks whether heads that pool *per class* (CSRA) or read the image with one query
per label (Query2Label, ML-Decoder) beat a plain, well-tuned pooling head. A fair comparison
needs the same backbone features under every head, so the backbone here is the SmallCNN's
convolutional trunk (``helpers.models.conv_block``) returning its feature map, and each head
maps a feature map ``(B, C, H, W)`` to logits ``(B, n_labels)``.

- ``GlobalMaxHead``: max over positions, then a linear layer; exactly the SmallCNN's head.
- ``CSRAHead``: Zhu & Wu, "Residual Attention: A Simple but Effective Method for Multi-Label
  Recognition", ICCV 2021; the ``CSRA`` class of the official code (Kevinz-code/CSRA,
  pipeline/csra.py), one head.
- ``LabelQueryHead``: Liu et al., "Query2Label: A Simple Transformer Way to Multi-Label
  Classification", arXiv 2021; a small version of the official code (SlongLiu/query2labels,
  lib/models/query2label.py and lib/models/transformer.py) at its default flags: one encoder
  layer, two decoder layers without self-attention among the queries.
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
    ``lam=0`` is average pooling. As ``T -> inf`` the attention term becomes the max over
    positions (the official code's ``T == 99`` switch; here ``temperature=math.inf``), so the
    logit becomes mean + lam * max: never max pooling alone. The defaults, ``lam=0.1`` and one
    head with ``T=1``, are those of the official main.py (its VOC 2007 setting); with them the
    mean carries most of the logit.

    A finite temperature so large that ``T * score`` overflows float32 would turn the softmax
    into NaN: it is refused, naming the temperature (use ``math.inf`` for the max).
    """

    def __init__(self, in_channels: int, n_labels: int, lam: float = 0.1, temperature: float = 1.0):
        super().__init__()
        if not lam >= 0 or math.isinf(lam):
            raise ValueError(f"lam must be a finite number >= 0, got {lam}")
        if not temperature > 0:
            raise ValueError(
                f"temperature must be > 0 (math.inf for max pooling), got {temperature}"
            )
        if not math.isinf(temperature) and temperature > torch.finfo(torch.float32).max:
            raise ValueError(
                f"temperature {temperature} overflows float32; use math.inf for the max"
            )
        self.in_channels, self.lam, self.temperature = in_channels, lam, temperature
        self.classifier = nn.Conv2d(in_channels, n_labels, 1, bias=False)

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_labels, H*W): each class's normalised score at each position."""
        _check_features(x, self.in_channels, "CSRAHead")
        norm = self.classifier.weight.flatten(1).norm(dim=1)  # (n_labels,)
        return self.classifier(x).flatten(2) / norm[None, :, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.class_scores(x)  # (B, n_labels, H*W)
        base = score.mean(dim=2)  # average pooling
        if math.isinf(self.temperature):  # the official code's T == 99
            attention = score.amax(dim=2)
        else:
            weights = torch.softmax(self._scaled(score), dim=2)
            attention = (score * weights).sum(dim=2)
        return base + self.lam * attention

    def _scaled(self, score: torch.Tensor) -> torch.Tensor:
        """T * score, refused where it overflows (softmax would give NaN)."""
        scaled = score * self.temperature
        if not torch.isfinite(scaled).all() and torch.isfinite(score).all():
            top = score.abs().max().item()
            raise ValueError(
                f"temperature {self.temperature} times a class score of {top:.3g} overflows "
                f"{score.dtype}; use a smaller temperature or math.inf for the max"
            )
        return scaled


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


def _attention_input(tokens: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    """Positions are added to the queries and keys of an attention, never to its values."""
    return tokens if pos is None else tokens + pos


class _QueryEncoderLayer(nn.Module):
    """Query2Label's encoder layer (post-norm): the feature tokens attend to each other.

    As in ``TransformerEncoderLayer.forward_post`` of SlongLiu/query2labels
    (lib/models/transformer.py): ``q = k = src + pos``, ``value = src``; residual and layer
    norm after the self-attention and after the feed-forward block.
    """

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout, batch_first=True)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = _attention_input(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, q, src)[0]))
        return self.norm2(src + self.dropout2(self.ff(src)))


class _QueryDecoderLayer(nn.Module):
    """Query2Label's decoder layer (post-norm), with or without the queries' self-attention.

    As in ``TransformerDecoderLayer.forward_post`` of SlongLiu/query2labels: the label
    embeddings enter as ``query_pos``, added to the queries of every attention; the
    cross-attention's keys are the memory plus its positions, its values the memory.
    ``self_attention=False`` is their ``omit_selfattn`` (``self_attn``, ``dropout1`` and
    ``norm1`` deleted), the default for every decoder layer of their ``main_mlc.py``.
    """

    def __init__(
        self, d_model: int, n_heads: int, ff_dim: int, dropout: float, self_attention: bool
    ):
        super().__init__()
        if self_attention:
            self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout, batch_first=True)
            self.norm1, self.dropout1 = nn.LayerNorm(d_model), nn.Dropout(dropout)
        self.self_attention = self_attention
        self.cross_attn = nn.MultiheadAttention(d_model, n_heads, dropout, batch_first=True)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
    ) -> torch.Tensor:
        if self.self_attention:  # only with query_self_attention, layer 2 on
            q = _attention_input(tgt, query_pos)
            talk = self.self_attn(q, q, tgt)[0]
            tgt = self.norm1(tgt + self.dropout1(talk))
        query = _attention_input(tgt, query_pos)  # the label embeddings
        key = _attention_input(memory, pos)  # the positions
        read = self.cross_attn(query, key, memory)[0]
        tgt = self.norm2(tgt + self.dropout2(read))
        return self.norm3(tgt + self.dropout3(self.ff(tgt)))


class LabelQueryHead(nn.Module):
    """A small Query2Label head: an encoder over the feature map, then label queries read it.

    Follows SlongLiu/query2labels (lib/models/query2label.py, lib/models/transformer.py) at
    the defaults of its ``main_mlc.py``: a 1x1 convolution projects the features to
    ``d_model`` (their ``--keep_input_proj``, needed when the channels differ); fixed sine
    position codes; ``encoder_layers=1`` encoder layer in which the feature tokens attend to
    each other; ``decoder_layers=2`` decoder layers whose input is zeros, with the learned
    label embeddings added to the queries of every attention; **no self-attention among the
    queries** (their ``--keep_first_self_attn_dec`` and ``--keep_other_self_attn_dec`` are off
    by default); post-norm (``--pre_norm`` off); a final layer norm; and ``GroupWiseLinear``:
    query c scored with its own weight vector W[c] and bias b[c].

    Without self-attention each label's logit depends on the image and on its own query only:
    labels do not exchange information. ``query_self_attention=True`` keeps the
    self-attention of every decoder layer after the first (their
    ``--keep_other_self_attn_dec``): it then runs on queries that have already read the image
    in the first layer's cross-attention. The first layer's self-attention is never kept: its
    input, zeros plus the label embeddings, is the same for every image.
    What differs from their code: sizes (``d_model``, ``ff_dim``; theirs default to 2048 and
    8192), and the sine position codes are not normalised to [0, 2 pi] (theirs use
    ``normalize=True``); dropout, activation (ReLU) and initialisation are theirs.
    """

    def __init__(
        self,
        in_channels: int,
        n_labels: int,
        d_model: int = 64,
        n_heads: int = 4,
        encoder_layers: int = 1,
        decoder_layers: int = 2,
        ff_dim: int = 128,
        dropout: float = 0.1,
        query_self_attention: bool = False,
    ):
        super().__init__()
        _check_query_settings(
            d_model, n_heads, encoder_layers, decoder_layers, query_self_attention
        )
        self.in_channels, self.n_labels, self.d_model = in_channels, n_labels, d_model
        self.input_proj = nn.Conv2d(in_channels, d_model, 1)
        self.queries = nn.Embedding(n_labels, d_model)
        self.encoder = nn.ModuleList(
            _QueryEncoderLayer(d_model, n_heads, ff_dim, dropout) for _ in range(encoder_layers)
        )
        self.decoder = nn.ModuleList(
            _QueryDecoderLayer(d_model, n_heads, ff_dim, dropout, query_self_attention and i > 0)
            for i in range(decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(d_model)
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            if p.dim() > 1:  # Query2Label's Transformer._reset_parameters
                nn.init.xavier_uniform_(p)
        self.weight = nn.Parameter(torch.empty(n_labels, d_model))
        self.bias = nn.Parameter(torch.empty(n_labels))
        bound = 1 / math.sqrt(d_model)  # Query2Label's GroupWiseLinear initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input: projected features (B, H*W, d_model) and positions (H*W, d)."""
        _check_features(x, self.in_channels, "LabelQueryHead")
        _, _, h, w = x.shape
        pos = sine_positions(h, w, self.d_model).to(x.device, x.dtype)
        return self.input_proj(x).flatten(2).transpose(1, 2), pos

    def decode(self, memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_labels) from encoded tokens (B, N, d) and positions."""
        d = self.d_model
        if memory.ndim != 3 or memory.shape[2] != d:
            shape = tuple(memory.shape)
            raise ValueError(f"memory must be (B, N, {d}), got {shape}")
        embeddings = self.queries.weight  # (n_labels, d): one per label
        query_pos = embeddings.expand(len(memory), -1, -1)
        hidden = torch.zeros_like(query_pos)  # Query2Label's decoder input
        for layer in self.decoder:
            hidden = layer(hidden, memory, pos, query_pos)
        hidden = self.decoder_norm(hidden)  # (B, n_labels, d_model)
        return (hidden * self.weight).sum(-1) + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        src, pos = self.tokens(x)
        for layer in self.encoder:
            src = layer(src, pos)
        return self.decode(src, pos)


def _check_query_settings(
    d_model: int, n_heads: int, encoder_layers: int, decoder_layers: int, query_self_attention: bool
) -> None:
    if d_model % 4 != 0:
        raise ValueError(f"d_model must be a multiple of 4 (2-D sine positions), got {d_model}")
    if n_heads < 1 or d_model % n_heads != 0:
        raise ValueError(f"n_heads must divide d_model={d_model}, got n_heads={n_heads}")
    if encoder_layers < 0:
        raise ValueError(f"encoder_layers must be >= 0, got {encoder_layers}")
    if decoder_layers < 1:
        raise ValueError(f"decoder_layers must be >= 1, got {decoder_layers}")
    if query_self_attention and decoder_layers < 2:
        raise ValueError(
            "query_self_attention keeps the self-attention of the decoder layers after the "
            f"first, so it needs decoder_layers >= 2, got decoder_layers={decoder_layers}"
        )


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
