"""helpers.voc on VOC-format data written by the tests: parsing, targets, the difficult flag,
the data set, the download's fast failure, and the VOC-style evaluation against sklearn."""

import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, f1_score

from helpers import voc, voc_download, voc_training
from helpers.voc import VOC_CLASSES, VOCMultiLabel, VOCObject, image_target, parse_annotation
from helpers.voc_layout import write_split, write_voc_image
from helpers.voc_training import voc_average_precision, voc_label_report

RNG = np.random.default_rng(0)

# id -> objects. 000002 has a difficult-only cat; 000003 a difficult dog next to a normal
# dog (so dog is present); 000004 a truncated car; 000005 several labels.
ANNOTATIONS = {
    "000001": [{"name": "person"}],
    "000002": [{"name": "person"}, {"name": "cat", "difficult": 1}],
    "000003": [{"name": "dog", "difficult": 1}, {"name": "dog"}],
    "000004": [{"name": "car", "truncated": 1}],
    "000005": [{"name": "person"}, {"name": "chair"}, {"name": "diningtable"}, {"name": "bottle"}],
    "000006": [{"name": "cat"}],
}


def pixels(h=24, w=32, grey=False):
    shape = (h, w) if grey else (h, w, 3)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    for i, (image_id, objects) in enumerate(ANNOTATIONS.items()):
        write_voc_image(root, image_id, pixels(grey=i == 1), objects)
    write_split(root, "trainval", ["000001", "000002", "000003"])
    write_split(root, "test", ["000004", "000005", "000006"])
    return root


def test_parse_annotation_reads_names_and_flags(voc_root):
    ann = parse_annotation(voc_root / "Annotations" / "000003.xml")
    assert ann["filename"] == "000003.jpg"
    assert ann["objects"] == [VOCObject("dog", True, False), VOCObject("dog", False, False)]
    car = parse_annotation(voc_root / "Annotations" / "000004.xml")["objects"]
    assert car == [VOCObject("car", False, True)]


def test_image_target_difficult_only_and_truncated():
    cls = list(VOC_CLASSES)
    present, difficult_only = image_target(
        [VOCObject("person", False, False), VOCObject("cat", True, False)]
    )
    assert present[cls.index("person")] == 1 and present.sum() == 1
    assert difficult_only[cls.index("cat")] == 1 and difficult_only.sum() == 1
    # a difficult instance beside a normal one: the class is simply present
    present, difficult_only = image_target(
        [VOCObject("dog", True, False), VOCObject("dog", False, False)]
    )
    assert present[cls.index("dog")] == 1 and difficult_only.sum() == 0
    present, _ = image_target([VOCObject("car", False, True)])  # truncated counts
    assert present[cls.index("car")] == 1


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("<annotation><object><name>cat</name>", ValueError, "not valid XML"),
        ("<annotation><object><name>kangaroo</name></object></annotation>", KeyError, "kangaroo"),
        ("<annotation><filename>a.jpg</filename></annotation>", ValueError, "no <object>"),
        ("<annotation><object><truncated>0</truncated></object></annotation>", ValueError, "name"),
        (
            "<annotation><object><name>cat</name><difficult>2</difficult></object></annotation>",
            ValueError,
            "difficult",
        ),
    ],
)
def test_bad_annotations_name_the_file(tmp_path, text, error, match):
    path = tmp_path / "bad_000.xml"
    path.write_text(text)
    with pytest.raises(error, match=match) as info:
        parse_annotation(path)
    assert "bad_000.xml" in str(info.value)


def test_dataset_targets_ignore_and_images(voc_root):
    cls = list(VOC_CLASSES)
    train = VOCMultiLabel(voc_root, "trainval")
    assert len(train) == 3 and train.ids == ["000001", "000002", "000003"]
    cat = cls.index("cat")
    assert train.ignore[1, cat] and train.ignore.sum() == 1
    assert train.present[1, cat] == 0
    assert train.targets[1, cat] == 1  # "positive": ML-GCN's training choice
    negative = VOCMultiLabel(voc_root, "trainval", difficult="negative")
    assert negative.targets[1, cat] == 0
    assert torch.equal(negative.targets, negative.present)
    x, y = train[1]  # written as greyscale: comes out as 3 channels in [0, 1]
    assert x.shape == (3, 24, 32) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x[0], x[1]) and torch.allclose(x[1], x[2])
    assert y.shape == (20,)
    test = VOCMultiLabel(voc_root, "test")
    assert test.present[1].sum() == 4 and "difficult-only" in repr(test)


def test_dataset_transform_gets_square_images(voc_root):
    ds = VOCMultiLabel(voc_root, "test", transform=voc_training.voc_transform(40, train=True))
    x, _ = ds[0]
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32


def test_cmyk_and_16bit_images_load(voc_root):
    Image.fromarray(pixels()).convert("CMYK").save(voc_root / "JPEGImages" / "000004.jpg")
    sixteen = (RNG.integers(0, 65536, (24, 32))).astype(np.uint16)
    Image.fromarray(sixteen).save(voc_root / "JPEGImages" / "000006.png")
    xml = voc_root / "Annotations" / "000006.xml"
    xml.write_text(xml.read_text().replace("000006.jpg", "000006.png"))
    ds = VOCMultiLabel(voc_root, "test")
    assert ds[0][0].shape == (3, 24, 32)
    x = ds[2][0]
    assert x.shape == (3, 24, 32)
    assert torch.allclose(x[0], torch.from_numpy(np.round(sixteen / 257) / 255).float(), atol=1e-6)


def test_missing_image_and_bad_split_fail_clearly(voc_root):
    (voc_root / "JPEGImages" / "000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000005.jpg"):
        VOCMultiLabel(voc_root, "test")
    with pytest.raises(FileNotFoundError, match="val.txt"):
        VOCMultiLabel(voc_root, "val")
    write_split(voc_root, "odd", ["999999"])
    with pytest.raises(FileNotFoundError, match="999999.xml"):
        VOCMultiLabel(voc_root, "odd")
    with pytest.raises(ValueError, match="difficult must be"):
        VOCMultiLabel(voc_root, "trainval", difficult="ignore")


def test_corrupt_jpeg_fails_naming_the_file(voc_root):
    (voc_root / "JPEGImages" / "000001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    ds = VOCMultiLabel(voc_root, "trainval")
    with pytest.raises(OSError, match="000001.jpg"):
        ds[0]


def test_find_voc(tmp_path, voc_root):
    assert voc.find_voc(tmp_path) == voc_root
    assert voc.find_voc(voc_root) == voc_root
    assert voc.find_voc(tmp_path / "nothing") is None


def test_download_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(voc_download, "reachable", lambda host, timeout: "OSError: no network")
    start = time.perf_counter()
    with pytest.raises(voc_download.VOCUnavailableError) as info:
        voc_download.download_voc2007(tmp_path, timeout=0.5)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    for part in ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar", "md5", "VOC layout"):
        assert part in message
    folder, text, _ = voc_download.timed_download(tmp_path, timeout=0.5)
    assert folder is None and "VOCtest" in text


def test_archives_are_torchvisions():
    archives = voc_download.voc_archives()
    assert archives["trainval"]["md5"] == "c52e279531787c972589f7e41ab4ae64"
    assert archives["test"]["md5"] == "b6e924de25625d8de591ea690078ad9f"


def random_case(n=60, k=5, p_ignore=0.15, seed=0):
    g = np.random.default_rng(seed)
    present = (g.random((n, k)) < 0.3).astype(int)
    ignore = (g.random((n, k)) < p_ignore) & (present == 0)
    probs = g.random((n, k)).astype(np.float32)
    probs = np.round(probs, 1)  # ties, as real scores have
    present[0], ignore[0] = 1, False  # every class has a positive
    return torch.tensor(probs), torch.tensor(present), torch.tensor(ignore)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_ap_matches_sklearn_on_the_kept_entries(seed):
    probs, present, ignore = random_case(seed=seed)
    ap = voc_average_precision(probs, present, ignore)
    for j in range(probs.shape[1]):
        keep = ~ignore[:, j]
        expected = average_precision_score(present[keep, j].numpy(), probs[keep, j].numpy())
        assert ap[j].item() == pytest.approx(expected, abs=1e-6)


def test_ignoring_changes_ap_when_a_difficult_image_ranks_high():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.9], [0.1, 0.2]])
    present = torch.tensor([[0, 0], [1, 1], [0, 0]])
    ignore = torch.tensor([[True, False], [False, False], [False, False]])
    assert voc_average_precision(probs, present, ignore)[0].item() == pytest.approx(1.0)
    no_ignore = voc_average_precision(probs, present, torch.zeros_like(ignore))
    assert no_ignore[0].item() == pytest.approx(0.5)


def test_label_report_matches_sklearn():
    probs, present, ignore = random_case(seed=3)
    thresholds = torch.tensor([0.3, 0.5, 0.5, 0.7, 0.1])
    names = list("abcde")
    table = voc_label_report(probs, present, ignore, names, thresholds)
    assert list(table.index) == [*names, "mean"]
    for j, name in enumerate(names):
        keep = ~ignore[:, j]
        y = present[keep, j].numpy()
        pred = (probs[keep, j] >= thresholds[j]).numpy().astype(int)
        assert table.loc[name, "F1"] == pytest.approx(f1_score(y, pred, zero_division=0))
        assert table.loc[name, "support"] == y.sum()
    assert table.loc["mean", "AP"] == pytest.approx(table.loc[names, "AP"].mean())


def test_false_positive_table_finds_the_cooccurring_class():
    names = ["chair", "diningtable", "cat"]
    present = torch.tensor([[0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    probs = torch.tensor([[0.9, 0.9, 0], [0.8, 0.9, 0], [0.1, 0, 0.9], [0.9, 0.9, 0]])
    table = voc_training.false_positive_table(
        probs, present, torch.zeros_like(present).bool(), names
    )
    assert table.iloc[0]["false positive"] == "chair"
    assert table.iloc[0]["count"] == 2
    assert table.iloc[0]["most common true class in those images"] == "diningtable"
    assert table.iloc[0]["share of them"] == 1.0


def test_make_loader_caps_workers_and_seeds(voc_root):
    ds = VOCMultiLabel(voc_root, "test", transform=voc_training.voc_transform(16, train=False))
    preset = replace(voc_training.CPU_PRESET, size=16, workers=0)
    loader = voc_training.make_loader(ds, preset, torch.device("cpu"), True)
    assert loader.num_workers == 0 and not loader.pin_memory and loader.generator is not None
    assert voc_training.GPU_PRESET.size == 448 and voc_training.GPU_PRESET.arch == "resnet50"


# --- refusals and constants -------------------------------------------------------------------


def test_download_facts_are_constants_equal_to_torchvisions():
    """The constants are ours; torchvision's private table is only read here, to compare."""
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    archives = voc_download.voc_archives()
    for split, key in [("trainval", "2007"), ("test", "2007-test")]:
        theirs = DATASET_YEAR_DICT[key]
        assert {k: theirs[k] for k in ("url", "filename", "md5")} == archives[split]
    assert voc_download.VOC2007_TEST_MD5 == "b6e924de25625d8de591ea690078ad9f"


def test_a_class_whose_every_entry_is_ignored_is_refused_naming_it():
    probs, present, ignore = random_case()
    present[:, 2], ignore[:, 2] = 0, True
    with pytest.raises(ValueError, match="every entry of 'bird' is ignored"):
        voc_average_precision(probs, present, ignore, classes=VOC_CLASSES[:5])
    with pytest.raises(ValueError, match="every entry of 'label 2' is ignored"):
        voc_average_precision(probs, present, ignore)


def test_voc_reports_refuse_bad_scores_and_shapes():
    probs, present, ignore = random_case()
    names = list(VOC_CLASSES[:5])
    bad = probs.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="1 of 300 probs are NaN or infinite"):
        voc_label_report(bad, present, ignore, names)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        voc_label_report(probs * 3 - 1, present, ignore, names)
    with pytest.raises(ValueError, match=r"present have shape \(60, 4\) but the scores \(60, 5\)"):
        voc_label_report(probs, present[:, :4], ignore, names)
    with pytest.raises(ValueError, match="present must be 0 or 1"):
        voc_label_report(probs, present * 0.9, ignore, names)
    with pytest.raises(ValueError, match="both present and ignored"):
        voc_label_report(probs, present, torch.ones_like(ignore), names)


def test_decompression_bomb_in_the_data_set_is_refused_naming_the_file(voc_root, monkeypatch):
    ds = VOCMultiLabel(voc_root, "trainval")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 24 x 32 = 768 > 2 x 300
    with pytest.raises(ValueError, match=r"000001\.jpg: Image size .* decompression bomb"):
        ds[0]


def test_a_class_without_positives_is_named_in_the_warning():
    """The warning names the class, not "label [0]" (each class is scored on its own)."""
    probs = torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.4, 0.3]])
    present = torch.tensor([[1, 0], [0, 0], [1, 0]])
    ignore = torch.zeros_like(present)
    with pytest.warns(UserWarning, match=r"no positives for label\(s\) bicycle: their AP"):
        voc_average_precision(probs, present, ignore, classes=["aeroplane", "bicycle"])
    with pytest.warns(UserWarning, match=r"no positives for label\(s\) 1: their AP"):
        voc_average_precision(probs, present, ignore)
    with pytest.raises(ValueError, match="image 0, 'aeroplane' is both present and ignored"):
        voc_average_precision(probs, present, present, classes=["aeroplane", "bicycle"])
