import pytest
import torch

from helpers.models import SmallCNN


@pytest.mark.parametrize("size", [28, 64])
def test_small_cnn_gives_one_logit_per_label_at_any_size(size):
    model = SmallCNN(n_labels=7, in_channels=1, width=8).eval()
    with torch.no_grad():
        out = model(torch.rand(5, 1, size, size))
    assert out.shape == (5, 7)


def test_small_cnn_outputs_are_logits_not_probabilities():
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    model.head.bias.data.fill_(-5.0)  # a logit far below 0 is a probability near 0
    with torch.no_grad():
        out = model(torch.rand(4, 1, 64, 64))
    assert (out < 0).all()


def test_small_cnn_finds_a_pattern_anywhere():
    """Global max pooling: moving the only ink in the image does not change the output."""
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    a, b = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    a[..., 8:16, 8:16] = 1
    b[..., 40:48, 40:48] = 1
    with torch.no_grad():
        torch.testing.assert_close(model(a), model(b))


def test_small_cnn_default_is_unchanged_three_blocks():
    """Chapter 2's SmallCNN(width=16): three blocks, 24,058 parameters, same weight names."""
    model = SmallCNN(width=16)
    assert len(model.features) == 3
    assert sum(p.numel() for p in model.parameters()) == 24_058
    assert model.head.in_features == 64
    assert "features.2.0.weight" in model.state_dict()
    assert "features.3.0.weight" not in model.state_dict()


@pytest.mark.parametrize("blocks", [1, 4, 5])
def test_small_cnn_blocks_double_channels_and_halve_resolution(blocks):
    model = SmallCNN(n_labels=3, width=8, blocks=blocks).eval()
    assert len(model.features) == blocks
    convs = [block[0] for block in model.features]
    assert [c.out_channels for c in convs] == [8 * 2**i for i in range(blocks)]
    assert [c.in_channels for c in convs] == [1] + [8 * 2**i for i in range(blocks - 1)]
    assert model.head.in_features == 8 * 2 ** (blocks - 1)
    with torch.no_grad():
        feats = model.features(torch.rand(2, 1, 64, 64))
        out = model(torch.rand(2, 1, 64, 64))
    assert feats.shape == (2, 8 * 2 ** (blocks - 1), 64 // 2**blocks, 64 // 2**blocks)
    assert out.shape == (2, 3)
