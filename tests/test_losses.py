import math

import pytest
import torch
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from helpers.losses import AsymmetricLoss, SigmoidFocalLoss, pos_weight_from_targets


def random_batch(seed=0, n=32, labels=7, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, labels, generator=g) * scale
    targets = (torch.rand(n, labels, generator=g) < 0.3).float()
    return logits, targets


ADVERSARIAL = torch.tensor(
    [[-1e4, -100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0, 1e4]] * 2
)  # every logit with target 1 (row 0) and target 0 (row 1)
ADVERSARIAL_TARGETS = torch.stack([torch.ones(9), torch.zeros(9)])


# --- pos_weight_from_targets -------------------------------------------------------------


def test_pos_weight_docs_example_100_positives_300_negatives_gives_3():
    targets = torch.zeros(400, 1)
    targets[:100] = 1
    assert pos_weight_from_targets(targets).tolist() == [3.0]


def test_pos_weight_by_hand():
    targets = torch.tensor(
        [
            [1, 0, 1, 0],
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    # positives per label: 3, 1, 1, 0 of 4 images -> negatives / positives: 1/3, 3, 3, and
    # the label with no positives counts as one positive: 4 / 1
    expected = torch.tensor([1 / 3, 3.0, 3.0, 4.0])
    assert torch.allclose(pos_weight_from_targets(targets), expected)


def test_pos_weight_cap_and_finiteness():
    targets = torch.zeros(1000, 3)
    targets[:1, 0] = 1  # 1 positive: 999
    targets[:500, 1] = 1  # balanced: 1
    weight = pos_weight_from_targets(targets, max_weight=50)
    assert weight.tolist() == [50.0, 1.0, 50.0]
    assert torch.isfinite(pos_weight_from_targets(targets)).all()


def test_pos_weight_balances_the_total_weight_of_positives_and_negatives():
    _, targets = random_batch(seed=1, n=200)
    w = pos_weight_from_targets(targets)
    positives, negatives = targets.sum(0), (1 - targets).sum(0)
    assert torch.allclose(w * positives, negatives)


def test_pos_weight_rejects_a_flat_vector():
    with pytest.raises(ValueError, match="n_samples, n_labels"):
        pos_weight_from_targets(torch.ones(5))


# --- AsymmetricLoss against the paper's formula ------------------------------------------


def asl_by_the_formula(logits, targets, gamma_neg, gamma_pos, clip):
    """The paper's per-element formula in float64 with the math module, one element at a time."""
    total = []
    for x, y in zip(logits.flatten().tolist(), targets.flatten().tolist(), strict=True):
        p = 1 / (1 + math.exp(-x))
        if y == 1:
            total.append(-((1 - p) ** gamma_pos) * math.log(p))
        else:
            p_m = max(p - clip, 0.0)
            total.append(-(p_m**gamma_neg) * math.log(1 - p_m))
    return torch.tensor(total, dtype=torch.float64).reshape(logits.shape)


@pytest.mark.parametrize(
    ("gamma_neg", "gamma_pos", "clip"), [(4, 1, 0.05), (4, 0, 0.05), (2, 0.5, 0.2), (1, 3, 0.0)]
)
def test_asl_matches_the_papers_formula(gamma_neg, gamma_pos, clip):
    logits, targets = random_batch(seed=2)
    loss = AsymmetricLoss(gamma_neg, gamma_pos, clip, reduction="none")(logits, targets)
    expected = asl_by_the_formula(logits, targets, gamma_neg, gamma_pos, clip)
    assert torch.allclose(loss.double(), expected, rtol=1e-5, atol=1e-7)
    mean = AsymmetricLoss(gamma_neg, gamma_pos, clip)(logits, targets)
    assert torch.allclose(mean.double(), expected.mean(), rtol=1e-5)


def test_asl_sum_matches_the_authors_implementation():
    """The authors' code: xs_neg = (1 - p + clip).clamp(max=1), a focal weight, a sum."""
    logits, targets = random_batch(seed=3)
    x, y = logits.double(), targets.double()
    xs_pos = torch.sigmoid(x)
    xs_neg = (1 - xs_pos + 0.05).clamp(max=1)
    loss = y * torch.log(xs_pos.clamp(min=1e-8)) + (1 - y) * torch.log(xs_neg.clamp(min=1e-8))
    pt = xs_pos * y + xs_neg * (1 - y)
    loss = loss * torch.pow(1 - pt, 1 * y + 4 * (1 - y))
    authors = -loss.sum()
    ours = AsymmetricLoss(reduction="sum")(logits, targets)
    assert torch.allclose(ours.double(), authors, rtol=1e-5)
    mean = AsymmetricLoss()(logits, targets)
    assert torch.allclose(mean * logits.numel(), ours, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_asl_with_zero_gammas_and_clip_is_plain_bce(reduction, seed):
    logits, targets = random_batch(seed=seed, scale=10)
    asl = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=0, reduction=reduction)
    bce = nn.BCEWithLogitsLoss(reduction=reduction)
    assert torch.allclose(asl(logits, targets), bce(logits, targets), rtol=1e-6, atol=1e-6)
    assert torch.allclose(
        asl(ADVERSARIAL, ADVERSARIAL_TARGETS),
        bce(ADVERSARIAL, ADVERSARIAL_TARGETS),
        rtol=1e-6,
        atol=1e-6,
    )


def test_clip_shifts_negative_probabilities_down_by_the_margin():
    # Without focusing, a negative's loss is -log(1 - max(p - clip, 0)).
    clip = 0.05
    probs = torch.tensor([0.01, 0.05, 0.06, 0.3, 0.9])
    logits = torch.logit(probs.double()).float().requires_grad_()
    targets = torch.zeros_like(probs)
    loss = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=clip, reduction="none")(logits, targets)
    expected = -torch.log(1 - (probs - clip).clamp(min=0))
    assert torch.allclose(loss, expected, atol=1e-6)
    # negatives at or below the margin cost nothing and get no gradient
    assert loss[:2].abs().max() < 1e-7
    loss.sum().backward()
    assert logits.grad[0] == 0 and logits.grad[2:].gt(0).all()
    # positives are not clipped
    pos = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=clip, reduction="none")(
        logits.detach(), torch.ones_like(probs)
    )
    assert torch.allclose(pos, -torch.log(probs), atol=1e-6)


def test_asl_down_weights_easy_negatives_more_than_bce():
    logits = torch.tensor([[-3.0, 0.0, 3.0]])
    targets = torch.zeros_like(logits)
    asl = AsymmetricLoss(reduction="none")(logits, targets)
    bce = nn.BCEWithLogitsLoss(reduction="none")(logits, targets)
    ratio = asl / bce
    assert (ratio < 1).all() and ratio[0, 0] < ratio[0, 1] < ratio[0, 2]


@pytest.mark.parametrize("gammas", [(4, 1, 0.05), (4, 0, 0.05), (0, 0, 0), (2, 0.5, 0.1)])
def test_asl_is_stable_for_huge_logits(gammas):
    logits = ADVERSARIAL.clone().requires_grad_()
    loss = AsymmetricLoss(*gammas)(logits, ADVERSARIAL_TARGETS)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # a confidently wrong positive (logit -1e4) costs ~1e4 per element, as in BCE
    per = AsymmetricLoss(*gammas, reduction="none")(ADVERSARIAL, ADVERSARIAL_TARGETS)
    assert torch.isfinite(per).all() and per[0, 0] > 1e3


def test_asl_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="reduction"):
        AsymmetricLoss(reduction="avg")
    with pytest.raises(ValueError, match="clip"):
        AsymmetricLoss(clip=1.0)


# --- SigmoidFocalLoss -----------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_module_is_torchvisions_function(reduction):
    logits, targets = random_batch(seed=4)
    ours = SigmoidFocalLoss(reduction=reduction)(logits, targets)
    theirs = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2, reduction=reduction)
    assert torch.equal(ours, theirs)


def test_focal_with_gamma_0_and_no_alpha_is_bce():
    logits, targets = random_batch(seed=5)
    focal = SigmoidFocalLoss(alpha=-1, gamma=0)(logits, targets)  # alpha < 0: no weighting
    assert torch.allclose(focal, nn.BCEWithLogitsLoss()(logits, targets), rtol=1e-6)


def test_focal_gradients_are_finite_for_huge_logits():
    logits = ADVERSARIAL.clone().requires_grad_()
    SigmoidFocalLoss()(logits, ADVERSARIAL_TARGETS).backward()
    assert torch.isfinite(logits.grad).all()


# --- refusals: shapes and targets ---------------------------------------------------------------


@pytest.mark.parametrize("loss", [AsymmetricLoss(), SigmoidFocalLoss()])
def test_losses_refuse_mismatched_shapes_instead_of_broadcasting(loss):
    with pytest.raises(ValueError, match=r"logits have shape \(4, 3\) but targets \(3,\)"):
        loss(torch.zeros(4, 3), torch.ones(3))


@pytest.mark.parametrize("loss", [AsymmetricLoss(), SigmoidFocalLoss()])
def test_losses_accept_soft_targets_but_not_nan_or_out_of_range(loss):
    logits = torch.linspace(-3, 3, 12).reshape(4, 3)
    soft = torch.full((4, 3), 0.9)
    assert torch.isfinite(loss(logits, soft))
    for bad in (float("nan"), 1.5, -0.2):
        targets = soft.clone()
        targets[1, 1] = bad
        with pytest.raises(ValueError, match=r"must be in \[0, 1\];\n1 of 12 values are not"):
            loss(logits, targets)


def test_asl_with_soft_targets_is_the_mix_of_its_two_terms():
    logits = torch.linspace(-3, 3, 12).reshape(4, 3)
    loss = AsymmetricLoss(reduction="none")
    mixed = loss(logits, torch.full((4, 3), 0.8))
    expected = 0.8 * loss(logits, torch.ones(4, 3)) + 0.2 * loss(logits, torch.zeros(4, 3))
    torch.testing.assert_close(mixed, expected)


@pytest.mark.parametrize("bad", [0.7, float("nan"), 2.0])
def test_pos_weight_refuses_targets_that_are_not_0_or_1(bad):
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets[0, 1] = bad
    with pytest.raises(ValueError, match="must be 0 or 1"):
        pos_weight_from_targets(targets)
