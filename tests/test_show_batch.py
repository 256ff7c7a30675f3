import matplotlib.pyplot as plt
import pytest
import torch

from helpers.plots import show_batch


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


VOCAB = ["cat", "dog", "ball"]
TARGETS = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 0]]).float()


def test_label_names_under_each_image():
    fig = show_batch(torch.zeros(3, 1, 8, 8), TARGETS, VOCAB, ncols=2)
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert labels == ["cat ball", "dog", "(none)", ""]  # 2x2 grid, last cell unused
    assert not fig.axes[3].axison
    assert all(ax.get_xticks().size == 0 for ax in fig.axes[:3])


def test_predictions_add_a_second_line_at_the_threshold():
    probs = torch.tensor([[0.9, 0.6, 0.1], [0.2, 0.4, 0.5], [0.0, 0.0, 0.0]])
    fig = show_batch(torch.zeros(3, 3, 8, 8), TARGETS, VOCAB, probs=probs)
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert labels == [
        "true cat ball\npred cat dog",
        "true dog\npred ball",
        "true (none)\npred (none)",
    ]
    fig = show_batch(torch.zeros(3, 3, 8, 8), TARGETS, VOCAB, probs=probs, threshold=0.7)
    assert fig.axes[0].get_xlabel() == "true cat ball\npred cat"


def test_rgb_images_are_drawn_in_colour():
    images = torch.rand(2, 3, 5, 5)
    fig = show_batch(images, TARGETS[:2], VOCAB)
    assert fig.axes[0].images[0].get_array().shape == (5, 5, 3)


def test_targets_that_do_not_match_raise():
    with pytest.raises(ValueError, match=r"targets must be \(3, 3\)"):
        show_batch(torch.zeros(3, 1, 8, 8), TARGETS[:, :2], VOCAB)
    with pytest.raises(ValueError, match=r"targets must be \(2, 3\)"):
        show_batch(torch.zeros(2, 1, 8, 8), TARGETS, VOCAB)
