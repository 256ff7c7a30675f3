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

__all__ = [
    "AssumeNegativeLoss",
    "AsymmetricLoss",
    "ExpectedPositiveLoss",
    "LabelSmoothingBCELoss",
    "LargeLossRejection",
    "MaskedBCELoss",
    "SigmoidFocalLoss",
    "pos_weight_from_targets",
]


def _check_pair(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """Same shape, targets in [0, 1] (soft targets allowed), no NaN target: the rule of
    :func:`helpers.labels.check_targets` with ``soft=True``."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits have shape {tuple(logits.shape)} but targets {tuple(targets.shape)}; "
            "they must match exactly (nothing is broadcast)"
        )
    check_targets(targets, soft=True)


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


# --- Chapter 11: losses for missing and noisy labels -------------------------------------
# Targets here may hold NaN for "unknown" (see helpers.noisy_labels): 1 = labelled present,
# 0 = labelled absent, NaN = never looked at. Each loss says what it does with each kind.


def _observed(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets as float on the logits' device, with shapes and values checked.

    Returns (targets with NaN replaced by 0, mask of unknown entries): NaN must never reach
    a loss term, or its gradient is NaN even where it is multiplied by 0.
    """
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be "
            "(n_images, n_labels)"
        )
    targets = targets.to(logits.dtype)
    unknown = torch.isnan(targets)
    filled = torch.where(unknown, 0.0, targets)
    if not ((filled == 0) | (filled == 1)).all():
        raise ValueError("targets must be 0, 1 or NaN (unknown); soft targets are not supported")
    return filled, unknown


class MaskedBCELoss(nn.Module):
    """Binary cross-entropy over the *known* entries only: unknown (NaN) entries are ignored.

    The partial-label loss of Durand, Mehrasa and Mori (CVPR 2019) without its curriculum:
    the loss is the mean over the known entries of the batch. (Durand et al. normalise per
    image by the share of known labels; Cole et al.'s code, which calls it "IU", divides
    the sum by all n_images x n_labels entries. With a constant share of unknown entries the
    three differ by a constant factor only.) A batch with no known entry gives 0.
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        filled, unknown = _observed(logits, targets)
        loss = F.binary_cross_entropy_with_logits(logits, filled, reduction="none")
        known = (~unknown).to(loss.dtype)
        return (loss * known).sum() / known.sum().clamp(min=1)


class AssumeNegativeLoss(nn.Module):
    """BCE that reads every entry not labelled 1 (0 or unknown) as a negative, weighted.

    ``neg_weight=1`` is "assume negative" (AN): plain ``BCEWithLogitsLoss`` after filling
    unknown entries with 0. ``neg_weight=1/(n_labels-1)`` (``neg_weight="1/(L-1)"``) is the
    "weak assume negative" (WAN) loss of Cole et al. (CVPR 2021), as in their code's
    ``loss_wan``: a negative counts 1/(L-1) as much as a positive, so that with one positive
    per image the positives and the assumed negatives weigh the same. Mean over all entries.
    """

    def __init__(self, neg_weight: float | str = 1.0):
        super().__init__()
        is_number = isinstance(neg_weight, int | float) and neg_weight >= 0
        if neg_weight != "1/(L-1)" and not is_number:
            raise ValueError(f"neg_weight must be a number >= 0 or '1/(L-1)', got {neg_weight!r}")
        self.neg_weight = neg_weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        filled, _ = _observed(logits, targets)
        w = 1 / (logits.shape[1] - 1) if self.neg_weight == "1/(L-1)" else self.neg_weight
        loss = F.binary_cross_entropy_with_logits(logits, filled, reduction="none")
        return (loss * torch.where(filled == 1, 1.0, w)).mean()

    def extra_repr(self) -> str:
        return f"neg_weight={self.neg_weight!r}"


class LabelSmoothingBCELoss(nn.Module):
    """BCE against smoothed targets: 1 becomes ``1 - eps``, 0 (or unknown) becomes ``eps``.

    Label smoothing (Szegedy et al., CVPR 2016) mixes the one-hot target with a uniform
    distribution: ``(1 - e) * y + e / K`` for K classes. Per binary label K = 2, so their
    ``e`` gives targets ``1 - e/2`` and ``e/2``; this class follows Cole et al.'s code
    (``loss_an_ls``: weights ``1 - ls_coef`` and ``ls_coef``, default 0.1), so ``eps`` here
    is half of Szegedy's ``e``. Unknown entries are assumed negative first. Mean over all
    entries.
    """

    def __init__(self, eps: float = 0.1):
        super().__init__()
        if not 0 <= eps < 0.5:
            raise ValueError(f"eps must be in [0, 0.5), got {eps}")
        self.eps = eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        filled, _ = _observed(logits, targets)
        smooth = filled * (1 - self.eps) + (1 - filled) * self.eps
        return F.binary_cross_entropy_with_logits(logits, smooth)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class ExpectedPositiveLoss(nn.Module):
    """Expected positive regularisation (EPR) of Cole et al. (CVPR 2021), as in ``loss_epr``.

    Only entries labelled 1 give a likelihood term, ``-log p``; nothing is assumed about
    the rest. Instead, a regulariser asks that the predicted number of positives per image,
    averaged over the batch, be the expected number ``k``:

        loss = sum over labelled positives of -log p / (n_images * n_labels)
               + (mean_i sum_j p_ij - k) ** 2 / n_labels ** 2

    Both terms are as in the authors' code (their positive term divides by all entries,
    and the regulariser by L squared). The only difference: ``-log p`` is computed as
    ``-logsigmoid(logit)``, where the authors use ``-log(p + 1e-5)``.
    ``k`` must come from outside the labels (the authors use the true mean number of labels
    per image of each data set): a practitioner estimates it, e.g. from a small audited set.
    """

    def __init__(self, expected_positives: float):
        super().__init__()
        if not expected_positives > 0:
            raise ValueError(f"expected_positives must be > 0, got {expected_positives}")
        self.expected_positives = float(expected_positives)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        filled, _ = _observed(logits, targets)
        positive = -(F.logsigmoid(logits) * filled).sum() / logits.numel()
        predicted = torch.sigmoid(logits).sum(1).mean()
        reg = (predicted - self.expected_positives) ** 2 / logits.shape[1] ** 2
        return positive + reg

    def extra_repr(self) -> str:
        return f"expected_positives={self.expected_positives}"


class LargeLossRejection(nn.Module):
    """Large-loss rejection (LL-R) or correction (LL-Ct) of Kim et al. (CVPR 2022).

    BCE with every entry not labelled 1 assumed negative. Networks fit clean labels first
    and mislabelled ones later, so an assumed negative with a *large* loss is probably a
    missed positive. From the second epoch on, in every batch the largest losses among the
    assumed negatives, ``ceil(rate * n_images * n_labels)`` of them, are rejected (weight 0,
    ``correct=False``: LL-R) or corrected to positives for that step (``correct=True``:
    LL-Ct). ``rate`` grows by ``delta`` per epoch: 0 in epoch 1, ``delta`` in epoch 2,
    ``2 * delta`` in epoch 3, as in the authors' ``losses.py``/``train.py``. The mean is
    over all entries (their code divides by n_images * n_labels).

    The loss counts training steps to know the epoch, so it needs ``steps_per_epoch``
    (``len(train_loader)``) and one fresh instance per training run. Calls without gradient
    (``fit``'s validation, under ``torch.inference_mode``) neither count nor reject: they
    return plain BCE.
    """

    def __init__(self, delta: float, steps_per_epoch: int, correct: bool = False):
        super().__init__()
        if not 0 <= delta <= 1:
            raise ValueError(f"delta must be between 0 and 1, got {delta}")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.delta, self.steps_per_epoch, self.correct = delta, steps_per_epoch, correct
        self.steps = 0

    def rate(self) -> float:
        """The share of entries rejected or corrected at the current training step."""
        return min(self.delta * (self.steps // self.steps_per_epoch), 1.0)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import math

        filled, _ = _observed(logits, targets)
        loss = F.binary_cross_entropy_with_logits(logits, filled, reduction="none")
        if not (torch.is_grad_enabled() and logits.requires_grad):
            return loss.mean()  # evaluation: no rejection, no step counted
        rate = self.rate()
        self.steps += 1
        assumed_negative = filled == 0
        k = min(math.ceil(rate * loss.numel()), int(assumed_negative.sum()))
        if k == 0:
            return loss.mean()
        candidates = torch.where(assumed_negative, loss.detach(), -1.0).flatten()
        chosen = torch.zeros(loss.numel(), dtype=torch.bool, device=loss.device)
        chosen[candidates.topk(k).indices] = True
        chosen = chosen.view_as(loss)
        if self.correct:
            flipped = F.binary_cross_entropy_with_logits(
                logits, torch.ones_like(filled), reduction="none"
            )
            loss = torch.where(chosen, flipped, loss)
        else:
            loss = torch.where(chosen, 0.0, loss)
        return loss.mean()

    def extra_repr(self) -> str:
        return f"delta={self.delta}, steps_per_epoch={self.steps_per_epoch}, correct={self.correct}"
