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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lam": -0.1}, "got -0.1"),
        ({"lam": math.nan}, "got nan"),
        ({"lam": math.inf}, "got inf"),
        ({"temperature": 0.0}, "got 0.0"),
        ({"temperature": -1.0}, "got -1.0"),
        ({"temperature": 1e39}, "temperature 1e\\+39 overflows float32"),
    ],
)
def test_csra_refuses_bad_settings_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CSRAHead(8, 3, **kwargs)


def test_csra_refuses_a_temperature_that_overflows_on_these_scores(features):
    """A finite T that fits float32 can still overflow T * score: refused, not NaN logits."""
    head = CSRAHead(32, 6, lam=1.0, temperature=1e38)
    with pytest.raises(ValueError, match=r"temperature 1e\+38 times a class score of .* overflows"):
        head(10 * features)
    assert torch.isfinite(CSRAHead(32, 6, temperature=1e3)(features)).all()


def small_query_head(**kwargs) -> LabelQueryHead:
    torch.manual_seed(0)
    return LabelQueryHead(32, 5, d_model=16, n_heads=2, ff_dim=32, **kwargs).eval()


def test_label_query_head_is_query2label_at_its_default_flags():
    """One encoder layer, two decoder layers, no self-attention among the queries."""
    head = LabelQueryHead(32, 5, d_model=16, n_heads=2)
    assert len(head.encoder) == 1 and len(head.decoder) == 2
    assert not any(hasattr(layer, "self_attn") for layer in head.decoder)
    kept = LabelQueryHead(32, 5, d_model=16, n_heads=2, query_self_attention=True)
    assert [hasattr(layer, "self_attn") for layer in kept.decoder] == [False, True]


def test_label_query_head_output_shape_and_memory_checks(features):
    head = small_query_head()
    memory, pos = head.tokens(features)
    assert memory.shape == (3, 5 * 6, 16) and pos.shape == (5 * 6, 16)
    assert head(features).shape == (3, 5)
    with pytest.raises(ValueError, match=r"\(B, N, 16\)"):
        head.decode(torch.randn(3, 30, 8), pos)


@pytest.mark.parametrize("query_self_attention", [False, True])
def test_every_label_logit_depends_on_the_image(features, query_self_attention):
    head = small_query_head(query_self_attention=query_self_attention)
    other = torch.randn_like(features)
    assert (head(features) - head(other)).abs().min() > 0


def test_without_self_attention_a_logit_depends_on_its_own_query_only(features):
    """At Query2Label's defaults labels exchange no information: changing the query of
    label 2 changes label 2's logit and no other."""
    head = small_query_head()
    before = head(features)
    with torch.no_grad():
        head.queries.weight[2] += 1.0
    after = head(features)
    torch.testing.assert_close(after[:, [0, 1, 3, 4]], before[:, [0, 1, 3, 4]])
    assert (after[:, 2] - before[:, 2]).abs().min() > 0
    # with the self-attention of the second decoder layer kept, the others hear it too
    kept = small_query_head(query_self_attention=True)
    before = kept(features)
    with torch.no_grad():
        kept.queries.weight[2] += 1.0
    assert (kept(features)[:, [0, 1, 3, 4]] - before[:, [0, 1, 3, 4]]).abs().min() > 0


def test_kept_self_attention_runs_on_queries_that_have_read_the_image(features):
    """The self-attention kept in layer 2 sees image-dependent queries: different images,
    different inputs. (Self-attention first, on the label embeddings alone, would see the
    same input for every image: that is why Query2Label never keeps it in layer 1.)"""
    head = small_query_head(query_self_attention=True)
    seen = []
    hook = head.decoder[1].self_attn.register_forward_hook(
        lambda module, args, out: seen.append(args[0].detach())
    )
    head(features)
    hook.remove()
    (queries,) = seen  # (B, n_labels, d_model), one image per row
    assert (queries[0] - queries[1]).abs().max() > 1e-3
    assert (queries[1] - queries[2]).abs().max() > 1e-3


def test_label_query_head_ignores_the_order_of_feature_tokens(features):
    """Cross-attention pools over tokens: permuting them (with their positions) changes nothing."""
    head = small_query_head()
    memory, pos = head.tokens(features)
    perm = torch.randperm(memory.shape[1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(head.decode(memory[:, perm], pos[perm]), head.decode(memory, pos))


@pytest.mark.parametrize("query_self_attention", [False, True])
def test_label_query_head_is_equivariant_to_permuting_the_labels(features, query_self_attention):
    """Reordering queries and their output weights reorders the logits, nothing else."""
    head = small_query_head(query_self_attention=query_self_attention)
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = small_query_head(query_self_attention=query_self_attention)
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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"d_model": 18}, "multiple of 4.*got 18"),
        ({"d_model": 16, "n_heads": 3}, "n_heads must divide d_model=16, got n_heads=3"),
        ({"n_heads": 0}, "got n_heads=0"),
        ({"encoder_layers": -1}, "encoder_layers must be >= 0, got -1"),
        ({"decoder_layers": 0}, "decoder_layers must be >= 1, got 0"),
        (
            {"decoder_layers": 1, "query_self_attention": True},
            "needs decoder_layers >= 2, got decoder_layers=1",
        ),
    ],
)
def test_label_query_head_refuses_impossible_settings_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LabelQueryHead(32, 5, **{"d_model": 16, "n_heads": 2, **kwargs})


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
    feed_forward = d * ff + ff + ff * d + d
    norm = 2 * d
    encoder = attention + feed_forward + 2 * norm
    decoder = attention + feed_forward + 2 * norm  # cross-attention only
    expected = (c * d + d) + n * d + encoder + 2 * decoder + norm + (n * d + n)
    head = LabelQueryHead(c, n, d, n_heads=4, ff_dim=ff)
    assert count_parameters(head) == expected
    kept = LabelQueryHead(c, n, d, n_heads=4, ff_dim=ff, query_self_attention=True)
    assert count_parameters(kept) == expected + attention + norm  # layer 2's self-attention
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
        LabelQueryHead(32, 5, d_model=16, dropout=0.0, query_self_attention=True),
    ):
        torch.manual_seed(0)
        opt = torch.optim.SGD(head.parameters(), lr=0.1)
        loss_fn = nn.BCEWithLogitsLoss()
        before = loss_fn(head(features), target)
        before.backward()
        opt.step()
        assert loss_fn(head(features), target) < before
