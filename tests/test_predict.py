import io
import struct
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from helpers.models import SmallCNN
from helpers.predict import (
    Classifier,
    Preprocessing,
    _weights_only_is_safe,
    build_model,
    load_classifier,
    open_image,
    predict_folder,
    predict_image,
    predict_tensor,
    prediction_table,
    preprocess,
    save_classifier,
)

VOCAB = ["cat", "dog"]
PREP = Preprocessing(image_size=8, channels=1, mean=(0.5,), std=(0.25,))


class MeanModel(nn.Module):
    """Logits from the image's mean value m: (4m, -4m). Predictable by hand."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([self.scale * m, -self.scale * m], dim=1)


def classifier(model=None, thresholds=(0.5, 0.5)) -> Classifier:
    model = (model or MeanModel()).eval()
    return Classifier(model, {"name": "MeanModel"}, VOCAB, PREP, torch.tensor(thresholds))


def write_png(path, value: int, size=(8, 8), mode="L"):
    Image.new(mode, size, value).save(path)
    return path


# --- saving and loading -------------------------------------------------------------------------


def test_round_trip_keeps_weights_labels_preprocessing_and_thresholds(tmp_path):
    torch.manual_seed(0)
    arch = {"name": "SmallCNN", "kwargs": {"n_labels": 2, "width": 4, "blocks": 2}}
    model = build_model(arch)
    model(torch.rand(4, 1, 8, 8))  # move batch-norm statistics away from their defaults
    model.eval()
    save_classifier(tmp_path / "m.pt", model, arch, VOCAB, PREP, [0.3, 0.7])
    loaded = load_classifier(tmp_path / "m.pt")
    assert loaded.vocab == VOCAB and loaded.preprocessing == PREP
    assert loaded.thresholds.tolist() == pytest.approx([0.3, 0.7])
    assert loaded.arch == arch and not loaded.model.training
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.model(x), model(x))
    # the file is plain data: weights_only=True reads it, and it holds no pickled classes
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["preprocessing"]["mean"] == (0.5,) and raw["vocab"] == VOCAB


def test_weights_only_is_unsafe_before_torch_2_6():
    # CVE-2025-32434: fixed in 2.6.0; local and pre-release suffixes do not matter
    for version in ["2.5.1+cu121", "2.4.0", "1.13.1", "2.6.0a0+git1234"]:
        assert _weights_only_is_safe(version) == version.startswith("2.6")
    assert _weights_only_is_safe("2.6.0") and _weights_only_is_safe("2.10.1+cpu")
    assert _weights_only_is_safe("3.0.0")


def test_the_loader_warns_on_an_affected_torch(tmp_path, monkeypatch):
    arch = {"name": "SmallCNN", "kwargs": {"n_labels": 2, "width": 4, "blocks": 1}}
    save_classifier(tmp_path / "m.pt", build_model(arch), arch, VOCAB, PREP, 0.5)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    with pytest.warns(UserWarning, match="CVE-2025-32434"):
        load_classifier(tmp_path / "m.pt")
    monkeypatch.setattr(torch, "__version__", "2.6.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_classifier(tmp_path / "m.pt")


def test_one_threshold_is_stored_once_per_label(tmp_path):
    arch = {"name": "SmallCNN", "kwargs": {"n_labels": 2, "width": 4, "blocks": 1}}
    save_classifier(tmp_path / "m.pt", build_model(arch), arch, VOCAB, PREP, 0.4)
    assert load_classifier(tmp_path / "m.pt").thresholds.tolist() == pytest.approx([0.4, 0.4])


def test_save_refuses_a_vocabulary_that_does_not_match_the_outputs(tmp_path):
    arch = {"name": "SmallCNN", "kwargs": {"n_labels": 3, "width": 4, "blocks": 1}}
    with pytest.raises(ValueError, match="3 outputs but the vocabulary 2"):
        save_classifier(tmp_path / "m.pt", build_model(arch), arch, VOCAB, PREP, 0.5)
    assert not (tmp_path / "m.pt").exists()


def test_load_refuses_a_bare_state_dict(tmp_path):
    torch.save(SmallCNN().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare.pt is not a classifier file"):
        load_classifier(tmp_path / "bare.pt")


def test_build_model_resnet_without_weights_and_unknown_names():
    model = build_model(
        {"name": "resnet_multilabel", "kwargs": {"arch": "resnet18", "n_labels": 3}}
    )
    assert model.fc.out_features == 3
    with pytest.raises(ValueError, match="unknown architecture 'VGG'"):
        build_model({"name": "VGG"})


def test_preprocessing_validates_its_fields():
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        Preprocessing(channels=2)
    with pytest.raises(ValueError, match="3 value"):
        Preprocessing(channels=3)
    with pytest.raises(ValueError, match="resize"):
        Preprocessing(resize="crop")


# --- preprocessing ------------------------------------------------------------------------------


def test_preprocess_normalises_and_pads_keeping_proportions():
    image = Image.new("L", (16, 8), 255)  # wide white image -> white band in the middle
    x = preprocess(image, PREP)
    assert x.shape == (1, 8, 8)
    white, black = (1 - 0.5) / 0.25, (0 - 0.5) / 0.25
    assert torch.allclose(x[0, 2:6], torch.full((4, 8), white))
    assert torch.allclose(x[0, :2], torch.full((2, 8), black))
    stretched = preprocess(image, Preprocessing(image_size=8, resize="stretch"))
    assert torch.allclose(stretched, torch.ones(1, 8, 8))


def test_preprocess_rgb_matches_torchvision_normalize():
    from torchvision.transforms.v2 import functional as F

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    prep = Preprocessing(image_size=8, channels=3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    expected = F.normalize(
        F.to_dtype(F.to_image(image), torch.float32, scale=True), prep.mean, prep.std
    )
    assert torch.allclose(preprocess(image, prep), expected, atol=1e-6)


# --- prediction ---------------------------------------------------------------------------------


def test_predict_image_hand_computed(tmp_path):
    # value 255 -> x = 2 everywhere -> logits (8, -8)
    path = write_png(tmp_path / "white.png", 255)
    result = predict_image(classifier(), path)
    assert result.source == "white.png"
    assert result.table.index.tolist() == ["cat", "dog"]  # most probable first
    assert result.table["probability"].tolist() == pytest.approx(
        [torch.sigmoid(torch.tensor(8.0)).item(), torch.sigmoid(torch.tensor(-8.0)).item()]
    )
    assert result.labels == ["cat"]
    # thresholds travel with the classifier, and can be overridden for one call
    assert predict_image(classifier(thresholds=(1.0, 0.0)), path).labels == ["dog"]
    assert predict_image(classifier(), path, thresholds=0.0).labels == ["cat", "dog"]


def test_prediction_table_sorts_and_compares_with_greater_or_equal():
    table = prediction_table(torch.tensor([0.2, 0.7, 0.2]), ["a", "b", "c"], [0.1, 0.9, 0.2])
    assert table.index.tolist() == ["b", "a", "c"]  # ties keep vocabulary order
    assert table["predicted"].tolist() == [False, True, True]


def test_predict_tensor_batches_and_matches_the_model():
    torch.manual_seed(0)
    model = SmallCNN(n_labels=2, width=4, blocks=2).eval()
    clf = classifier(model)
    x = torch.rand(10, 1, 8, 8)
    probs = predict_tensor(clf, x, batch_size=3)
    assert probs.shape == (10, 2) and probs.dtype == torch.float32
    assert torch.allclose(probs, torch.sigmoid(model(x)), atol=1e-6)
    assert not torch.is_inference_mode_enabled()


def test_predict_folder_one_row_per_image_sorted_by_name(tmp_path):
    write_png(tmp_path / "b.png", 0)  # black: x = -2, logits (-8, 8) -> dog
    write_png(tmp_path / "a.png", 255)
    (tmp_path / "notes.txt").write_text("not an image suffix: ignored")
    table = predict_folder(classifier(), tmp_path, batch_size=1)
    assert table.index.tolist() == ["a.png", "b.png"]
    assert table["labels"].tolist() == ["cat", "dog"]
    assert table.loc["a.png", "cat"] == pytest.approx(torch.sigmoid(torch.tensor(8.0)).item())
    assert (table["error"] == "").all()


def test_predict_folder_raises_or_reports_a_bad_file(tmp_path):
    write_png(tmp_path / "a.png", 255)
    (tmp_path / "broken.png").write_text("hello")
    with pytest.raises(OSError, match="broken.png"):
        predict_folder(classifier(), tmp_path)
    table = predict_folder(classifier(), tmp_path, errors="report")
    assert table.loc["a.png", "labels"] == "cat"
    assert "cannot decode broken.png" in table.loc["broken.png", "error"]
    assert pd.isna(table.loc["broken.png", "cat"])


# --- bad input: each gives an error that names the file, or a documented conversion -------------


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png does not exist"):
        open_image(tmp_path / "nothere.png", PREP)
    with pytest.raises(FileNotFoundError, match="is a folder"):
        open_image(tmp_path, PREP)


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.png is empty \(0 bytes\)"):
        open_image(tmp_path / "empty.png", PREP)


def test_not_an_image_and_a_truncated_one(tmp_path):
    (tmp_path / "text.png").write_text("this is text")
    with pytest.raises(OSError, match="cannot decode .*text.png: not an image"):
        open_image(tmp_path / "text.png", PREP)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:200])
    with pytest.raises(OSError, match="cannot decode .*cut.png"):
        open_image(tmp_path / "cut.png", PREP)


def bomb_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of zeros: tiny on disk, width * height bytes decoded."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    raw = zlib.compress(b"\x00" * ((width + 1) * height), 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    (tmp_path / "big.png").write_bytes(bomb_png(100, 100))
    with pytest.raises(
        ValueError, match=r"big.png: 100x100 = 10,000 pixels is over the limit of 5,000"
    ):
        open_image(tmp_path / "big.png", PREP, max_pixels=5_000)
    assert open_image(tmp_path / "big.png", PREP).shape == (1, 8, 8)  # under PIL's limit
    # PIL's own decompression-bomb guard (here lowered so the test stays small)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    with pytest.raises(ValueError, match="big.png: Image size .* could be decompression bomb"):
        open_image(tmp_path / "big.png", PREP)  # 10,000 > 2 x 1,000: PIL's error
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)
    with pytest.raises(ValueError, match="big.png: Image size"):
        open_image(tmp_path / "big.png", PREP)  # between 1x and 2x: PIL only warns; refused too


def test_channels_are_converted_as_documented(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    rgba = np.concatenate([np.stack([grey] * 3, -1), np.full((8, 8, 1), 255, np.uint8)], -1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")  # 16-bit
    reference = open_image(tmp_path / "grey.png", PREP)
    for name in ["rgb.png", "rgba.png", "sixteen.png"]:
        assert torch.allclose(open_image(tmp_path / name, PREP), reference), name
    with Image.open(tmp_path / "sixteen.png") as opened:
        assert opened.mode.startswith("I")  # really a 16-bit file
    # transparent pixels become black, whatever colour hides under them
    rgba[..., 3] = 0
    rgba[..., :3] = 255
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    clear = open_image(tmp_path / "clear.png", PREP)
    assert torch.allclose(clear, torch.full_like(clear, (0 - 0.5) / 0.25))
    # a 3-channel model gets greyscale copied to three channels
    rgb_prep = Preprocessing(image_size=8, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    three = open_image(tmp_path / "grey.png", rgb_prep)
    assert three.shape == (3, 8, 8) and torch.allclose(three[0], three[2])


def test_uploaded_bytes_go_through_the_same_checks_and_name_the_upload(tmp_path):
    path = write_png(tmp_path / "a.png", 255)
    assert torch.equal(open_image(path.read_bytes(), PREP, name="a.png"), open_image(path, PREP))
    with pytest.raises(OSError, match=r"cannot decode notes.png: not an image") as info:
        open_image(b"hello", PREP, name="notes.png")
    assert "tmp" not in str(info.value)
    with pytest.raises(ValueError, match="^uploaded file is empty"):
        open_image(b"", PREP)
    assert predict_image(classifier(), path.read_bytes(), name="a.png").labels == ["cat"]


# --- the classifier file is checked when it is loaded -----------------------------------------


def small_saved(tmp_path, name="c.pt"):
    torch.manual_seed(0)
    arch = {"name": "SmallCNN", "kwargs": {"n_labels": 2, "width": 4, "blocks": 1}}
    path = tmp_path / name
    save_classifier(path, SmallCNN(n_labels=2, width=4, blocks=1), arch, VOCAB, PREP, [0.3, 0.6])
    return path


def edited(tmp_path, change) -> "Path":  # noqa: F821
    state = torch.load(small_saved(tmp_path), weights_only=True)
    change(state)
    out = tmp_path / "edited.pt"
    torch.save(state, out)
    return out


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s["thresholds"].__setitem__(0, float("nan")), "field 'thresholds' must be"),
        (lambda s: s["thresholds"].__setitem__(0, 1.5), "field 'thresholds' must be"),
        (lambda s: s["thresholds"].pop(), "field 'thresholds' has 1 values for 2 labels"),
        (lambda s: s["vocab"].append("bird"), "field 'thresholds' has 2 values for 3 labels"),
        (
            lambda s: s["preprocessing"].update(std=[0.0]),
            "field 'preprocessing' std must be positive",
        ),
        (lambda s: s["preprocessing"].update(image_size=0), "field 'preprocessing' image_size"),
        (lambda s: s["preprocessing"].update(image_size=10**6), "field 'preprocessing' image_size"),
        (lambda s: s["model"]["head.weight"].fill_(float("inf")), "field 'model.head.weight' has"),
        (lambda s: s.pop("vocab"), "field 'vocab' is missing"),
        (lambda s: s.update(sha256="0" * 64), "field 'sha256' does not match"),
    ],
)
def test_load_refuses_a_bad_field_naming_it(tmp_path, change, match):
    with pytest.raises(ValueError, match=r"edited\.pt: " + match):
        load_classifier(edited(tmp_path, change))


def test_vocabulary_longer_than_the_head_is_refused_at_load(tmp_path):
    from helpers.predict import _checksum

    def change(s):
        s["vocab"].append("bird")
        s["thresholds"].append(0.5)
        s["sha256"] = _checksum(s)

    with pytest.raises(ValueError, match="field 'vocab' has 3 labels but the model 2 outputs"):
        load_classifier(edited(tmp_path, change))


@pytest.mark.parametrize("content", [b"", b"not a torch file", None])
def test_truncated_empty_or_foreign_file_names_the_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:  # the first half of a real file
        raw = small_saved(tmp_path).read_bytes()
        content = raw[: len(raw) // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.pt"):
        load_classifier(path)


def test_an_older_format_is_refused_saying_so(tmp_path):
    path = edited(tmp_path, lambda s: s.update(format="multilabel-book-classifier/1"))
    with pytest.raises(ValueError, match="format 'multilabel-book-classifier/1'.*save it again"):
        load_classifier(path)


def test_save_refuses_bad_thresholds(tmp_path):
    model, arch = SmallCNN(n_labels=2, width=4, blocks=1), {"name": "SmallCNN"}
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        save_classifier(tmp_path / "x.pt", model, arch, VOCAB, PREP, [0.5, 1.5])
    with pytest.raises(ValueError, match="one number or one per label"):
        save_classifier(tmp_path / "x.pt", model, arch, VOCAB, PREP, [0.5, 0.5, 0.5])


def test_prediction_table_refuses_logits_and_wrong_lengths():
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        prediction_table(torch.tensor([2.0, -1.0]), VOCAB, 0.5)
    with pytest.raises(ValueError, match="3 probabilities but the vocabulary has 2"):
        prediction_table(torch.tensor([0.2, 0.3, 0.4]), VOCAB, 0.5)
