"""The multi-label heads of chapter 13: shapes, the values they must reduce to, sizes."""

import math

import pytest
import torch
from torch import nn

from helpers.heads import (
    HEADS,
    CSRAHead,
    GlobalMaxHead,
    LabelQueryHead,
    SpatialBackbone,
    _from_small_cnn,
    count_parameters,
    make_model,
    sine_positions,
)
from helpers.models import SmallCNN


@pytest.fixture
def features():
    torch.manual_seed(0)
    return torch.randn(3, 32, 5, 6)


@pytest.mark.parametrize("head", HEADS)
def test_every_head_maps_images_to_one_logit_per_label(head):
    torch.manual_seed(0)
    model = make_model(head, n_labels=7, width=8, blocks=3).eval()
    out = model(torch.rand(4, 1, 56, 56))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "head", [GlobalMaxHead(32, 5), CSRAHead(32, 5), LabelQueryHead(32, 5, d_model=16)]
)
def test_heads_refuse_feature_maps_of_the_wrong_shape(head):
    with pytest.raises(ValueError, match=r"\(B, 32, H, W\)"):
        head(torch.randn(2, 16, 4, 4))
    with pytest.raises(ValueError, match="feature map"):
        head(torch.randn(2, 32, 16))


def test_global_max_head_is_the_small_cnn():
    torch.manual_seed(0)
    cnn = SmallCNN(n_labels=10, width=8, blocks=3).eval()
    net = _from_small_cnn(cnn).eval()
    x = torch.rand(5, 1, 56, 56)
    torch.testing.assert_close(net(x), cnn(x), rtol=0, atol=0)
    assert count_parameters(net) == count_parameters(cnn)


def test_global_max_head_by_hand(features):
    head = GlobalMaxHead(32, 4)
    pooled = features.flatten(2).max(dim=2).values
    torch.testing.assert_close(head(features), pooled @ head.fc.weight.T + head.fc.bias)


def official_csra(x, weight, lam, temperature):
    """The formula of Kevinz-code/CSRA pipeline/csra.py, written out independently."""
    score = torch.einsum("bdhw,cd->bchw", x, weight) / weight.norm(dim=1)[None, :, None, None]
    score = score.flatten(2)
    base = score.mean(dim=2)
    if temperature == 99:
        att = score.max(dim=2).values
    else:
        att = (score * torch.softmax(score * temperature, dim=2)).sum(dim=2)
    return base + lam * att


@pytest.mark.parametrize("lam, temperature", [(0.1, 1.0), (0.5, 3.0), (1.0, 0.5)])
def test_csra_matches_the_official_formula(features, lam, temperature):
    head = CSRAHead(32, 6, lam=lam, temperature=temperature)
    weight = head.classifier.weight.detach().flatten(1)
    torch.testing.assert_close(head(features), official_csra(features, weight, lam, temperature))


def test_csra_with_lambda_zero_is_mean_pooling_of_class_scores(features):
    head = CSRAHead(32, 6, lam=0.0)
    weight = head.classifier.weight.detach().flatten(1)
    # mean over positions commutes with the 1x1 conv: lam=0 is global average pooling + linear
    expected = features.mean(dim=(2, 3)) @ (weight / weight.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(head(features), expected)


def test_csra_attention_tends_to_max_pooling_as_temperature_grows(features):
    exact = CSRAHead(32, 6, lam=1.0, temperature=math.inf)
    weight = exact.classifier.weight.detach().flatten(1)
    torch.testing.assert_close(exact(features), official_csra(features, weight, 1.0, 99))
    hot = CSRAHead(32, 6, lam=1.0, temperature=1e4)
    hot.load_state_dict(exact.state_dict())
    torch.testing.assert_close(hot(features), exact(features), atol=1e-3, rtol=0)
    # and at a small temperature the attention term is close to the mean: logit ~ (1 + lam) mean
    cold = CSRAHead(32, 6, lam=1.0, temperature=1e-6)
    cold.load_state_dict(exact.state_dict())
    base = CSRAHead(32, 6, lam=0.0)
    base.load_state_dict(exact.state_dict())
    torch.testing.assert_close(cold(features), 2 * base(features), atol=1e-4, rtol=0)


def test_csra_logits_do_not_depend_on_the_scale_of_a_class_weight(features):
    head = CSRAHead(32, 4)
    before = head(features)
    with torch.no_grad():
        head.classifier.weight[2] *= 10  # normalised classifier: only the direction counts
    torch.testing.assert_close(head(features), before)


@pytest.mark.parametrize("kwargs", [{"lam": -0.1}, {"temperature": 0.0}, {"lam": math.nan}])
def test_csra_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        CSRAHead(8, 3, **kwargs)


def test_label_query_head_output_shape_and_memory_checks(features):
    head = LabelQueryHead(32, 5, d_model=16, n_heads=2).eval()
    memory = head.tokens(features)
    assert memory.shape == (3, 5 * 6, 16)
    assert head(features).shape == (3, 5)
    with pytest.raises(ValueError, match=r"\(B, N, 16\)"):
        head.decode(torch.randn(3, 30, 8))


def test_label_query_head_ignores_the_order_of_feature_tokens(features):
    """Cross-attention pools over tokens: permuting them (with their positions) changes nothing."""
    head = LabelQueryHead(32, 5, d_model=16, n_heads=2).eval()
    memory = head.tokens(features)
    perm = torch.randperm(memory.shape[1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(head.decode(memory[:, perm]), head.decode(memory))


def test_label_query_head_is_equivariant_to_permuting_the_labels(features):
    """Reordering queries and their output weights reorders the logits, nothing else."""
    torch.manual_seed(0)
    head = LabelQueryHead(32, 5, d_model=16, n_heads=2, layers=2).eval()
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = LabelQueryHead(32, 5, d_model=16, n_heads=2, layers=2).eval()
    state = head.state_dict()
    for name in ("queries.weight", "weight", "bias"):
        state[name] = state[name][perm]
    permuted.load_state_dict(state)
    torch.testing.assert_close(permuted(features), head(features)[:, perm])


def test_label_query_head_uses_positions():
    """Without position codes a query could not tell where a feature is; with them it can."""
    torch.manual_seed(0)
    head = LabelQueryHead(4, 3, d_model=8, n_heads=2).eval()
    x = torch.zeros(1, 4, 2, 2)
    x[0, :, 0, 0] = 1.0
    moved = torch.zeros(1, 4, 2, 2)
    moved[0, :, 1, 1] = 1.0
    assert not torch.allclose(head(x), head(moved))


def test_sine_positions_values():
    pos = sine_positions(2, 3, 8)
    assert pos.shape == (6, 8)
    # token (row 1, column 2): first quarter sin(1 * f), third quarter sin(2 * f), f = 1, 0.01
    f = torch.tensor([1.0, 0.01])
    torch.testing.assert_close(
        pos[1 * 3 + 2], torch.cat([f.sin(), f.cos(), (2 * f).sin(), (2 * f).cos()])
    )
    with pytest.raises(ValueError, match="multiple of 4"):
        sine_positions(2, 2, 6)


def test_parameter_counts():
    c, n, d, ff = 64, 10, 32, 64
    assert count_parameters(GlobalMaxHead(c, n)) == c * n + n
    assert count_parameters(CSRAHead(c, n)) == c * n  # a 1x1 conv without bias
    attention = 4 * d * d + 4 * d  # q, k, v and output projections with biases
    layer = 2 * attention + (d * ff + ff + ff * d + d) + 3 * 2 * d  # + 3 layer norms
    expected = (c * d + d) + n * d + 2 * layer + (n * d + n)
    assert count_parameters(LabelQueryHead(c, n, d, n_heads=4, layers=2, ff_dim=ff)) == expected
    backbone = SpatialBackbone(1, 8, 3)
    assert backbone.out_channels == 32
    frozen = make_model("CSRA", width=8)
    frozen.backbone.requires_grad_(False)
    assert count_parameters(frozen) == 32 * 10
    assert count_parameters(frozen, trainable_only=False) == count_parameters(
        make_model("CSRA", width=8)
    )


def test_make_model_refuses_an_unknown_head():
    with pytest.raises(ValueError, match="unknown head 'gcn'"):
        make_model("gcn")


def test_heads_train(features):
    """One optimiser step lowers the loss of every head on a fixed batch (gradients flow)."""
    target = (torch.rand(3, 5) > 0.5).float()
    for head in (
        GlobalMaxHead(32, 5),
        CSRAHead(32, 5),
        LabelQueryHead(32, 5, d_model=16, dropout=0.0),
    ):
        torch.manual_seed(0)
        opt = torch.optim.SGD(head.parameters(), lr=0.1)
        loss_fn = nn.BCEWithLogitsLoss()
        before = loss_fn(head(features), target)
        before.backward()
        opt.step()
        assert loss_fn(head(features), target) < before
