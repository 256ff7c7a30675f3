"""The correlated multi-digit data of chapter 13: pair rates, degradation, splits."""

import numpy as np
import pytest
import torch

from helpers.correlated_digits import (
    CorrelatedDigitConfig,
    compose_label_sets,
    degrade_digits,
    make_correlated_digits,
    partner_rate,
    resize_digits,
    sample_label_sets,
)
from helpers.data import DigitSource


def fake_source(per_digit: int = 6) -> DigitSource:
    """Digit d is a 28x28 square of value 10 * (d + 1) with a different inner pattern per copy."""
    labels = torch.arange(10).repeat_interleave(per_digit)
    images = torch.zeros(len(labels), 28, 28, dtype=torch.uint8)
    for i, d in enumerate(labels.tolist()):
        images[i, 6:22, 6:22] = 10 * (d + 1)
        images[i, 10, 10 + i % 8] = 255
    return DigitSource("fake", images, labels, images.clone(), labels.clone())


def targets_of(label_sets):
    t = torch.zeros(len(label_sets), 10)
    for i, s in enumerate(label_sets):
        t[i, s] = 1
    return t


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9, 1.0])
def test_partner_rate_is_2r_over_1_plus_r(rate):
    sets = sample_label_sets(40_000, ((1, 7), (3, 8)), rate, np.random.default_rng(0))
    t = targets_of(sets)
    expected = 2 * rate / (1 + rate)
    for a, b in [(1, 7), (7, 1), (3, 8), (8, 3)]:
        assert partner_rate(t, a, b) == pytest.approx(expected, abs=0.01)
    assert partner_rate(t, 0, 5) < 0.2  # unpaired digits stay nearly independent


def test_label_sets_are_one_or_two_units_and_fit_four_cells():
    sets = sample_label_sets(5_000, ((1, 7), (3, 8)), 1.0, np.random.default_rng(1))
    sizes = {len(s) for s in sets}
    assert sizes == {1, 2, 3, 4}
    assert all(len(set(s)) == len(s) for s in sets)  # no digit twice
    assert [1, 7, 3, 8] in sets or [3, 8, 1, 7] in sets


@pytest.mark.parametrize(
    "pairs, rate, match",
    [
        (((1, 7),), 1.5, "pair_rate"),
        (((1, 7),), float("nan"), "pair_rate"),
        (((1, 1),), 0.5, "two different digits"),
        (((1, 7), (7, 3)), 0.5, "in two pairs"),
        (((1, 12),), 0.5, "digits are 0-9"),
    ],
)
def test_sample_label_sets_refuses_bad_settings(pairs, rate, match):
    with pytest.raises(ValueError, match=match):
        sample_label_sets(3, pairs, rate, np.random.default_rng(0))


def test_compose_places_each_listed_digit_once():
    src = fake_source()
    sets = [[1, 7], [3], [0, 2, 4, 6]]
    images, counts = compose_label_sets(
        sets, src.train_images, src.train_labels, 56, np.random.default_rng(0)
    )
    assert images.shape == (3, 1, 56, 56) and images.dtype == torch.uint8
    torch.testing.assert_close(counts, targets_of(sets).long())
    for i, digits in enumerate(sets):
        # each fake digit has its own grey level: the canvas holds exactly those levels
        levels = set(images[i].unique().tolist()) - {0, 255}
        assert levels == {10 * (d + 1) for d in digits}


def test_compose_refuses_what_does_not_fit_or_is_missing():
    src = fake_source()
    with pytest.raises(ValueError, match="holds at most 4 digits"):
        compose_label_sets(
            [[0, 1, 2, 3, 4]], src.train_images, src.train_labels, 56, np.random.default_rng(0)
        )
    keep = src.train_labels != 5
    with pytest.raises(ValueError, match="needs a 5"):
        compose_label_sets(
            [[5]], src.train_images[keep], src.train_labels[keep], 56, np.random.default_rng(0)
        )


def test_degrade_identity_fade_and_blur():
    src = fake_source()
    digits = src.train_images[:4]
    torch.testing.assert_close(degrade_digits(digits, 0.0, 1.0), digits)
    faded = degrade_digits(digits, 0.0, 0.5)
    torch.testing.assert_close(faded, (digits.float() * 0.5).round().to(torch.uint8))
    blurred = degrade_digits(digits, 2.0, 1.0)
    # the kernel sums to one: ink is moved, not added (up to rounding), and the peak drops
    ink, ink_after = digits.float().sum((1, 2)), blurred.float().sum((1, 2))
    assert torch.allclose(ink_after, ink, rtol=0.01)
    assert (blurred.amax((1, 2)) < digits.amax((1, 2))).all()


@pytest.mark.parametrize(
    "images, sigma, contrast, match",
    [
        (torch.zeros(2, 28, 28), 1.0, 0.5, "uint8"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 1.0, 0.5, r"\(N, H, W\)"),
        (torch.zeros(2, 28, 28, dtype=torch.uint8), -1.0, 0.5, "blur_sigma"),
        (torch.zeros(2, 28, 28, dtype=torch.uint8), float("nan"), 0.5, "blur_sigma"),
        (torch.zeros(2, 28, 28, dtype=torch.uint8), 1.0, 0.0, "contrast"),
        (torch.zeros(2, 28, 28, dtype=torch.uint8), 1.0, 1.5, "contrast"),
    ],
)
def test_degrade_refuses_bad_input(images, sigma, contrast, match):
    with pytest.raises(ValueError, match=match):
        degrade_digits(images, sigma, contrast)


def test_resize_digits():
    src = fake_source()
    small = resize_digits(src.train_images[:3], 14)
    assert small.shape == (3, 14, 14) and small.dtype == torch.uint8
    # a flat 16x16 square at value v becomes a flat 8x8 square at the same value inside
    assert small[0, 7, 7].item() == src.train_images[0, 14, 14].item() == 10
    assert small[0, 0, 0].item() == 0
    with pytest.raises(ValueError, match="between 4 and 256"):
        resize_digits(src.train_images[:3], 2)


def test_make_correlated_digits_splits():
    src = fake_source(per_digit=20)
    config = CorrelatedDigitConfig(n_train=400, n_val=100, n_test=300, degrade=True, seed=3)
    splits = make_correlated_digits(config, src)
    assert {k: len(v) for k, v in splits.items()} == {
        "train": 400,
        "val": 100,
        "test": 300,
        "test_shifted": 300,
    }
    for name in ("train", "test"):
        assert partner_rate(splits[name].targets, 1, 7) > 0.8
    shifted = splits["test_shifted"].targets
    assert ((shifted[:, 1] > 0) & (shifted[:, 7] > 0)).sum() == 0  # pairs broken
    assert ((shifted[:, 3] > 0) & (shifted[:, 8] > 0)).sum() == 0
    # degraded digits (7 and 8) are faded: a canvas with only a 7 has no pixel above 0.5 * 255
    only7 = splits["train"].targets.sum(1).eq(1) & (splits["train"].targets[:, 7] > 0)
    assert only7.any() and splits["train"].images[only7].max() <= 128
    again = make_correlated_digits(config, src)
    torch.testing.assert_close(again["test_shifted"].images, splits["test_shifted"].images)


def test_make_correlated_digits_small_canvas():
    src = fake_source(per_digit=20)
    config = CorrelatedDigitConfig(n_train=50, n_val=20, n_test=20, canvas=28, digit_size=14)
    splits = make_correlated_digits(config, src)
    assert splits["train"].images.shape == (50, 1, 28, 28)
    with pytest.raises(ValueError, match="n_val"):
        make_correlated_digits(CorrelatedDigitConfig(n_val=0), src)
    with pytest.raises(ValueError, match="holds at most"):  # 28-px digits on a 28-px canvas
        make_correlated_digits(
            CorrelatedDigitConfig(n_train=50, n_val=20, n_test=20, canvas=28), src
        )


def test_partner_rate_values_and_refusal():
    t = targets_of([[1, 7], [1], [1, 7, 3], [7]])
    assert partner_rate(t, 1, 7) == pytest.approx(2 / 3)
    assert partner_rate(t, 7, 1) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="digit 5 occurs in none"):
        partner_rate(t, 5, 1)
