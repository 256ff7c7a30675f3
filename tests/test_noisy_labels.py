import math

import pytest
import torch

from helpers.noisy_labels import (
    check_observed,
    corruption_summary,
    fill_unknown,
    flip_labels,
    hide_positives,
    mask_unknown,
    single_positive,
)


def clean(n=2000, labels=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, labels, generator=g) < 0.25).float()


def test_hide_positives_only_turns_positives_into_zeros_at_the_rate():
    y = clean()
    obs = hide_positives(y, 0.4, seed=1)
    assert ((obs == 1) <= (y == 1)).all()  # never a new positive
    assert (obs[y == 0] == 0).all()
    hidden = ((y == 1) & (obs == 0)).sum() / (y == 1).sum()
    assert hidden.item() == pytest.approx(0.4, abs=0.03)  # ~5,000 positives: sd ~0.007


def test_rates_zero_and_one_and_seeds():
    y = clean()
    assert torch.equal(hide_positives(y, 0.0, seed=0), y)
    assert hide_positives(y, 1.0, seed=0).sum() == 0
    assert torch.equal(hide_positives(y, 0.5, seed=3), hide_positives(y, 0.5, seed=3))
    assert not torch.equal(hide_positives(y, 0.5, seed=3), hide_positives(y, 0.5, seed=4))
    assert torch.isnan(mask_unknown(y, 1.0, seed=0)).all()
    assert torch.equal(mask_unknown(y, 0.0, seed=0), y)


def test_flip_labels_rates_and_equivalence_with_hiding():
    y = clean()
    obs = flip_labels(y, 0.0, 0.1, seed=2)
    assert (obs[y == 1] == 1).all()
    assert ((obs == 1) & (y == 0)).sum() / (y == 0).sum() == pytest.approx(0.1, abs=0.01)
    assert torch.equal(flip_labels(y, 0.3, 0.0, seed=5), hide_positives(y, 0.3, seed=5))


def test_mask_unknown_keeps_known_entries_correct():
    y = clean()
    obs = mask_unknown(y, 0.5, seed=0)
    known = ~torch.isnan(obs)
    assert torch.equal(obs[known], y[known])
    assert (~known).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_single_positive_keeps_exactly_one_true_positive_per_image():
    y = clean()
    y[0] = 0  # an image without positives: its row becomes all unknown
    obs = single_positive(y, seed=0)
    has_pos = y.sum(1) > 0
    assert ((obs == 1).sum(1)[has_pos] == 1).all()
    assert ((obs == 1) <= (y == 1)).all()
    assert torch.isnan(obs[obs != 1]).all()  # nothing else is observed, not even negatives
    assert torch.isnan(obs[0]).all()
    # uniform choice: over many images with labels {0, 1}, each is kept about half the time
    two = torch.zeros(4000, 3)
    two[:, :2] = 1
    kept = single_positive(two, seed=1)[:, 0].eq(1).float().mean().item()
    assert kept == pytest.approx(0.5, abs=0.03)


def test_corruption_summary_counts_by_hand():
    y = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    obs = torch.tensor([[1.0, 1, 0, math.nan], [0, math.nan, 0, 0]])
    s = corruption_summary(y, obs)
    assert s["positives kept"] == 1
    assert s["positives hidden"] == 1
    assert s["false positives"] == 1
    assert s["unknown"] == 2
    assert s["share of positives hidden"] == pytest.approx(1 / 3)
    assert s["share of negatives flipped to 1"] == pytest.approx(1 / 5)
    assert s["share of entries unknown"] == pytest.approx(2 / 8)


def test_fill_unknown():
    obs = torch.tensor([[1.0, math.nan, 0.0]])
    assert fill_unknown(obs).tolist() == [[1.0, 0.0, 0.0]]
    assert fill_unknown(obs, 1.0).tolist() == [[1.0, 1.0, 0.0]]


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan])
def test_bad_rates_are_refused(rate):
    with pytest.raises(ValueError, match="between 0 and 1"):
        hide_positives(clean(10), rate, seed=0)


def test_bad_targets_are_refused_with_their_position():
    y = clean(5)
    y[2, 3] = 0.5
    with pytest.raises(ValueError, match="image 2, label 3"):
        hide_positives(y, 0.1, seed=0)
    y[2, 3] = math.nan  # clean targets have no unknown entries
    with pytest.raises(ValueError, match="image 2, label 3"):
        mask_unknown(y, 0.1, seed=0)
    with pytest.raises(ValueError, match="n_images, n_labels"):
        single_positive(torch.ones(5), seed=0)
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        check_observed(torch.tensor([[2.0, 0.0]]))
    with pytest.raises(ValueError, match="differ in shape"):
        corruption_summary(clean(4), clean(5))
