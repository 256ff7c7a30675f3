import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.losses import (
    AssumeNegativeLoss,
    ExpectedPositiveLoss,
    LabelSmoothingBCELoss,
    LargeLossRejection,
    MaskedBCELoss,
)

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.5, 0.0]])
TARGETS = torch.tensor([[1.0, math.nan, 0.0], [math.nan, 1.0, 0.0]])


def bce(z, y):
    p = 1 / (1 + math.exp(-z))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_masked_bce_is_bce_on_the_known_entries_by_hand():
    known = [(2.0, 1), (0.5, 0), (1.5, 1), (0.0, 0)]
    expected = sum(bce(z, y) for z, y in known) / 4
    assert MaskedBCELoss()(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)
    full = torch.tensor([[1.0, 0, 0], [1, 1, 0]])
    assert MaskedBCELoss()(LOGITS, full).item() == pytest.approx(
        nn.BCEWithLogitsLoss()(LOGITS, full).item(), rel=1e-6
    )


def test_masked_bce_gradient_is_zero_on_unknown_entries_and_finite():
    logits = LOGITS.clone().requires_grad_()
    MaskedBCELoss()(logits, TARGETS).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 0] == 0
    assert MaskedBCELoss()(LOGITS, torch.full((2, 3), math.nan)).item() == 0.0


def test_assume_negative_is_bce_with_unknown_as_zero():
    filled = torch.nan_to_num(TARGETS, nan=0.0)
    expected = nn.BCEWithLogitsLoss()(LOGITS, filled).item()
    assert AssumeNegativeLoss()(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)


def test_weak_negatives_weight_1_over_L_minus_1_by_hand():
    # 3 labels: every entry not labelled 1 counts 1/2
    entries = [
        (2.0, 1, 1),
        (-1.0, 0, 0.5),
        (0.5, 0, 0.5),
        (-3.0, 0, 0.5),
        (1.5, 1, 1),
        (0.0, 0, 0.5),
    ]
    expected = sum(w * bce(z, y) for z, y, w in entries) / 6
    loss = AssumeNegativeLoss(neg_weight="1/(L-1)")(LOGITS, TARGETS).item()
    assert loss == pytest.approx(expected, rel=1e-6)
    assert (
        AssumeNegativeLoss(0.25)(LOGITS, TARGETS).item()
        < AssumeNegativeLoss()(LOGITS, TARGETS).item()
    )


def test_label_smoothing_targets_by_hand():
    eps = 0.1
    filled = torch.nan_to_num(TARGETS, nan=0.0)
    expected = (
        sum(
            (1 - eps) * bce(z, y) + eps * bce(z, 1 - y)
            for z, y in zip(LOGITS.flatten().tolist(), filled.flatten().tolist(), strict=True)
        )
        / 6
    )  # Cole et al.'s form: (1 - eps) * own term + eps * the opposite term
    assert LabelSmoothingBCELoss(eps)(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)
    assert LabelSmoothingBCELoss(0.0)(LOGITS, filled).item() == pytest.approx(
        nn.BCEWithLogitsLoss()(LOGITS, filled).item(), rel=1e-6
    )


def test_expected_positive_regulariser_against_the_formula():
    k = 1.5
    p = torch.sigmoid(LOGITS)
    positives = -(math.log(p[0, 0]) + math.log(p[1, 1])) / 6  # divided by N * L
    reg = (p.sum(1).mean().item() - k) ** 2 / 3**2
    loss = ExpectedPositiveLoss(k)(LOGITS, TARGETS).item()
    assert loss == pytest.approx(positives + reg, rel=1e-6)
    # labelled negatives give no term: only labelled positives and the regulariser count
    all_unknown = torch.where(TARGETS == 1, 1.0, math.nan)
    assert ExpectedPositiveLoss(k)(LOGITS, all_unknown).item() == pytest.approx(loss, rel=1e-6)


def test_large_loss_rejection_drops_the_largest_assumed_negative_losses():
    logits = torch.tensor([[4.0, 3.0, -2.0, 1.0], [0.5, -1.0, 2.0, -4.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 0, math.nan, 0]])
    per = F.binary_cross_entropy_with_logits(
        logits.detach(), torch.nan_to_num(targets), reduction="none"
    )
    loss_fn = LargeLossRejection(delta=0.25, steps_per_epoch=1)
    first = loss_fn(logits, targets)  # epoch 1: rate 0, plain BCE
    assert first.item() == pytest.approx(per.mean().item(), rel=1e-6)
    second = loss_fn(logits, targets)  # epoch 2: rate 0.25 -> ceil(0.25 * 8) = 2 rejected
    # the two largest losses among assumed negatives: logit 3.0 (target 0) and 2.0 (NaN)
    kept = per.clone()
    kept[0, 1] = kept[1, 2] = 0
    assert second.item() == pytest.approx(kept.mean().item(), rel=1e-6)
    assert loss_fn.rate() == 0.5
    # the positive with the largest logit is never a candidate, whatever its loss


def test_large_loss_correction_flips_the_chosen_entries_to_positives():
    logits = torch.tensor([[3.0, -2.0, 0.0, 1.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 0, 1, 0]])
    loss_fn = LargeLossRejection(delta=0.25, steps_per_epoch=1, correct=True)
    loss_fn(logits, targets)
    loss = loss_fn(logits, targets).item()  # rate 0.25 of 4 entries: the 3.0 entry corrected
    expected = (bce(3.0, 1) + bce(-2.0, 0) + bce(0.0, 1) + bce(1.0, 0)) / 4
    assert loss == pytest.approx(expected, rel=1e-6)


def test_large_loss_evaluation_calls_neither_count_nor_reject():
    loss_fn = LargeLossRejection(delta=0.5, steps_per_epoch=1)
    with torch.inference_mode():
        loss_fn(LOGITS, TARGETS)
        loss_fn(LOGITS, TARGETS)
    assert loss_fn.steps == 0


@pytest.mark.parametrize(
    "loss_fn",
    [
        MaskedBCELoss(),
        AssumeNegativeLoss(),
        LabelSmoothingBCELoss(),
        ExpectedPositiveLoss(1.0),
        LargeLossRejection(0.1, 10),
    ],
)
def test_bad_targets_are_refused(loss_fn):
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        loss_fn(LOGITS, torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="n_images, n_labels"):
        loss_fn(LOGITS, torch.zeros(2, 4))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        AssumeNegativeLoss(-1.0)
    with pytest.raises(ValueError):
        LabelSmoothingBCELoss(0.5)
    with pytest.raises(ValueError):
        ExpectedPositiveLoss(0.0)
    with pytest.raises(ValueError):
        LargeLossRejection(1.5, 10)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AssumeNegativeLoss(-1.0), "neg_weight .* got -1.0"),
        (lambda: AssumeNegativeLoss(float("inf")), "neg_weight .* got inf"),
        (lambda: AssumeNegativeLoss("1/L"), "neg_weight .* got '1/L'"),
        (lambda: LabelSmoothingBCELoss(0.5), r"eps must be in \[0, 0.5\), got 0.5"),
        (lambda: ExpectedPositiveLoss(0.0), "expected_positives .* got 0.0"),
        (lambda: ExpectedPositiveLoss(float("nan")), "expected_positives .* got nan"),
        (lambda: LargeLossRejection(1.5, 10), "delta .* got 1.5"),
        (lambda: LargeLossRejection(0.1, 0), "steps_per_epoch .* got 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_weak_negatives_refuse_a_single_label_naming_the_division_by_zero():
    with pytest.raises(ValueError, match="'1/\\(L-1\\)' divides by zero for 1 label"):
        AssumeNegativeLoss("1/(L-1)")(torch.zeros(4, 1), torch.ones(4, 1))


def test_epr_refuses_an_expected_count_no_image_can_reach():
    loss = ExpectedPositiveLoss(12.0)
    with pytest.raises(ValueError, match="expected_positives = 12.0 but an image has only 10"):
        loss(torch.zeros(4, 10), torch.ones(4, 10))
    ExpectedPositiveLoss(10.0)(torch.zeros(4, 10), torch.ones(4, 10))  # reachable: accepted
