import pytest
import torch
from torch import nn

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


# --- ResNets with ImageNet weights ------------------------------------------------------

import time  # noqa: E402

import torchvision  # noqa: E402

from helpers.models import (  # noqa: E402
    WeightsUnavailableError,
    pretrained_state_dict,
    resnet_multilabel,
    weights_file,
)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch.hub folder, so the tests never touch (or depend on) the real cache."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.delenv("BOOK_OFFLINE")  # a reader's machine, not the pinned runs
    return tmp_path / "hub"


def test_planted_weights_file_is_what_the_pretrained_path_loads(hub_dir):
    """The line readers run in Colab, exercised offline: torch.hub finds the file and loads it."""
    torch.manual_seed(0)
    planted = torchvision.models.resnet18(weights=None).state_dict()
    path = weights_file(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    assert path == hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(planted, path)

    model = resnet_multilabel("resnet18", n_labels=4, weights="DEFAULT")
    torch.testing.assert_close(model.conv1.weight, planted["conv1.weight"])
    torch.testing.assert_close(model.layer4[1].bn2.running_var, planted["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 4  # the ImageNet head is replaced, not loaded
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


def test_weights_file_that_is_not_a_plain_state_dict_is_refused(hub_dir):
    """weights_only=True: a file that would run code on load does not load."""
    path = weights_file(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save({"evil": time.perf_counter}, path)  # a function object: not allowed
    with pytest.raises(Exception, match="weights_only|Weights only"):
        pretrained_state_dict("resnet18")


def test_offline_without_the_file_fails_fast_and_says_what_to_do(hub_dir, monkeypatch):
    import helpers.models as models

    monkeypatch.setattr(models, "WEIGHTS_HOST", "weights.invalid")  # never resolves

    def no_download(*args, **kwargs):
        raise AssertionError("the download was tried")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(WeightsUnavailableError) as info:
        resnet_multilabel("resnet50", weights="IMAGENET1K_V2")
    message = str(info.value)
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message
    assert "checkpoints/resnet50-11ad3fa6.pth" in message
    assert "weights=None" in message


def test_a_hanging_network_is_cut_off_by_the_timeout(monkeypatch):
    import helpers.env as env

    monkeypatch.delenv("BOOK_OFFLINE")  # a reader's machine, not the pinned runs

    class SlowSocket:
        def __init__(self, *args, **kwargs):
            time.sleep(5)  # a connection that hangs (the thread ends quietly later)

        def close(self):
            pass

    monkeypatch.setattr(env.socket, "create_connection", SlowSocket)
    start = time.perf_counter()
    # the message alone proves it: had it waited for the socket, the socket would have answered
    assert env.reachable("example.org", timeout=0.2) == "no answer within the timeout"
    assert time.perf_counter() - start < 5  # it did not wait for the 5-second hang


def test_random_init_never_touches_the_network(hub_dir, monkeypatch):
    import helpers.models as models

    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(models, "reachable", no_network)
    model = resnet_multilabel("resnet18", n_labels=20, weights=None, pool="max")
    assert isinstance(model.avgpool, nn.AdaptiveMaxPool2d)
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 64, 64)).shape == (2, 20)


def test_unknown_pool_is_refused():
    with pytest.raises(ValueError, match="pool"):
        resnet_multilabel("resnet18", weights=None, pool="mean")


def test_the_pin_refuses_even_a_cached_weights_file(hub_dir, monkeypatch):
    """BOOK_OFFLINE=1 (stored runs, CI): no ImageNet weights, whatever the machine holds."""
    path = weights_file(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="not used: BOOK_OFFLINE=1 pins this run"):
        resnet_multilabel("resnet18", n_labels=3, weights="IMAGENET1K_V1")
