"""Losses for imbalanced multi-label data, next to the plain ``BCEWithLogitsLoss``.

Every loss here takes raw logits (N, L) and multi-hot float targets (N, L), like
``BCEWithLogitsLoss``; shapes must match exactly (nothing is broadcast). The losses accept
soft targets in [0, 1] too (label smoothing: each formula is a weighted sum of a positive and
a negative term, and a target of 0.9 weights them 0.9 and 0.1), as ``BCEWithLogitsLoss``
does; :func:`pos_weight_from_targets` counts positives and accepts only 0/1. Two tools for
rare labels:

- :func:`pos_weight_from_targets` computes ``BCEWithLogitsLoss``'s ``pos_weight``
  (negatives / positives per label, from the *training* targets);
- :class:`AsymmetricLoss` is the Asymmetric Loss of Ben-Baruch, Ridnik et al. (ICCV 2021),
  which down-weights easy negatives more than positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from helpers.labels import check_targets


def _check_pair(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """Same shape, targets in [0, 1] (soft targets allowed), no NaN target."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits have shape {tuple(logits.shape)} but targets {tuple(targets.shape)}; "
            "they must match exactly (nothing is broadcast)"
        )
    bad = ~((targets >= 0) & (targets <= 1))  # NaN fails both
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} target value(s) are outside [0, 1] or NaN, e.g. "
            f"{targets[bad].flatten()[0].item()!r}; targets are 0/1, or soft targets in [0, 1]"
        )


def pos_weight_from_targets(targets: torch.Tensor, max_weight: float | None = None) -> torch.Tensor:
    """Per-label ``pos_weight`` = negatives / positives, as in the PyTorch docs' example.

    The docs: 100 positives and 300 negatives in a class give ``pos_weight`` 3, so each
    positive counts three times and the positives weigh as much as the negatives.
    Compute it on the training split only: the validation and test splits are for measuring.

    A label with no positives has no finite ratio; it is counted as if it had one positive
    (weight = number of negatives), which is large but finite, and the weight is harmless:
    it multiplies a positive term that never occurs. ``max_weight`` optionally caps every
    weight, because a huge weight on a label with a handful of positives makes its
    gradient spiky.
    """
    targets = torch.as_tensor(targets)
    if targets.ndim != 2 or len(targets) == 0:
        raise ValueError(f"targets must be (n_samples, n_labels), got shape {tuple(targets.shape)}")
    targets = check_targets(targets).float()  # positives are counted: 0/1 only, no soft targets
    positives = targets.sum(0)
    negatives = len(targets) - positives
    weight = negatives / positives.clamp(min=1)
    if max_weight is not None:
        weight = weight.clamp(max=max_weight)
    return weight


class AsymmetricLoss(nn.Module):
    """Asymmetric Loss (ASL), Ben-Baruch, Ridnik et al., ICCV 2021, for sigmoid outputs.

    With p = sigmoid(logit), per element:

    - positive (target 1): ``L+ = (1 - p) ** gamma_pos * log(p)``
    - negative (target 0): ``L- = p_m ** gamma_neg * log(1 - p_m)``, ``p_m = max(p - clip, 0)``

    and the loss is ``-(y * L+ + (1 - y) * L-)``. ``gamma_neg > gamma_pos`` focuses less on
    easy negatives than on positives; the clip ("probability margin") sets the loss of a
    negative with p <= clip to exactly zero. With ``gamma_neg = gamma_pos = clip = 0`` it is
    plain binary cross-entropy.

    Defaults are those of the authors' ``AsymmetricLoss`` class (gamma_neg 4, gamma_pos 1,
    clip 0.05). Reduction: the authors' code returns the **sum** over the batch; here the
    default is the **mean** over all elements, like ``BCEWithLogitsLoss``, so the loss and
    its gradients have the same scale as BCE's and a learning rate tuned for BCE still fits.
    ``reduction="sum"`` gives the authors' value.

    Soft targets in [0, 1] are accepted: the loss is linear in y, so a smoothed target
    mixes the positive and negative terms (the authors' code computes the same expression).
    """

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float = 0.05,
        reduction: str = "mean",
    ):
        super().__init__()
        if reduction not in {"mean", "sum", "none"}:
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if not 0 <= clip < 1:
            raise ValueError(f"clip must be in [0, 1), got {clip}")
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits and targets of the same shape; targets 0/1 or soft in [0, 1]."""
        _check_pair(logits, targets)
        targets = targets.to(logits.dtype)
        # Everything is computed from the logits with logsigmoid, never as log(sigmoid(x)):
        # in float32 sigmoid(x) is exactly 0 or 1 once |x| > ~100 and log(0) = -inf.
        log_p = F.logsigmoid(logits)  # log(p)
        log_1m_p = F.logsigmoid(-logits)  # log(1 - p)
        if self.clip > 0:
            p_m = (torch.sigmoid(logits) - self.clip).clamp(min=0)
            log_1m_pm = torch.log1p(-p_m)  # p_m <= 1 - clip, so 1 - p_m >= clip > 0
            # p_m ** gamma_neg, with a finite gradient where p_m = 0 even for gamma_neg < 1
            clipped = p_m == 0
            w_neg = torch.where(clipped, 0.0, torch.where(clipped, 1.0, p_m) ** self.gamma_neg)
        else:
            log_1m_pm = log_1m_p
            w_neg = torch.exp(self.gamma_neg * log_p)  # p ** gamma_neg
        w_pos = torch.exp(self.gamma_pos * log_1m_p)  # (1 - p) ** gamma_pos
        # The focusing weights stay in the gradient, as in the authors' AsymmetricLoss class
        # (its switch to detach them is commented out).
        loss_pos = targets * w_pos * log_p
        loss_neg = (1 - targets) * w_neg * log_1m_pm
        loss = -(loss_pos + loss_neg)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}, "
            f"reduction={self.reduction!r}"
        )


class SigmoidFocalLoss(nn.Module):
    """torchvision's ``sigmoid_focal_loss`` as a module, so ``fit`` can take it like BCE.

    Defaults alpha 0.25, gamma 2 (torchvision's, from the RetinaNet paper). Reduction is the
    mean over all elements, the same as ``BCEWithLogitsLoss`` and :class:`AsymmetricLoss`.
    Note alpha weights *positives* by 0.25 and negatives by 0.75: chosen for object
    detection, where it works together with gamma, it is not a rare-label up-weighting.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean"):
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits and targets of the same shape; targets 0/1 or soft in [0, 1]."""
        from torchvision.ops import sigmoid_focal_loss

        _check_pair(logits, targets)
        return sigmoid_focal_loss(
            logits, targets.to(logits.dtype), self.alpha, self.gamma, self.reduction
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"
