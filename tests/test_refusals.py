"""Refusals of a count, bound or index name the value they refused (issue 19), for the
modules of data, splitting, training support and prediction. Each test can fail: before
these refusals the inputs were accepted silently or refused without the value."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import distributed
from helpers.correlated_digits import partner_rate, sample_label_sets
from helpers.data import DigitSource, MultiDigitConfig, compose_canvases, make_multi_digit
from helpers.folder import MultiLabelImageFolder
from helpers.gradcam import grad_cam
from helpers.models import SmallCNN
from helpers.predict import Preprocessing, load_classifier, save_classifier
from helpers.speed import speed_report, time_side_by_side
from helpers.splits import random_split_indices, stratified_split


def _flat_source(n_per_class: int = 10, missing: int | None = None) -> DigitSource:
    labels = torch.arange(10).repeat_interleave(n_per_class)
    if missing is not None:
        labels = labels[labels != missing]
    images = (20 * (labels + 1)).to(torch.uint8)[:, None, None].expand(-1, 28, 28).clone()
    return DigitSource("flat test digits", images, labels, images.clone(), labels.clone())


# --- data -----------------------------------------------------------------------------------


def test_digit_weights_on_a_digit_without_images_names_the_digit():
    weights = (1.0,) * 10
    with pytest.raises(ValueError, match=r"gives weight 1 to digit 3, which has no images"):
        make_multi_digit(
            MultiDigitConfig(n_train=5, n_val=5, n_test=5, digit_weights=weights),
            _flat_source(missing=3),
        )


def test_a_negative_number_of_canvases_is_refused_naming_it():
    source = _flat_source()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"number of canvases \(0 or more\), got -4"):
        compose_canvases(source.train_images, source.train_labels, -4, 64, 1, 2, rng)
    with pytest.raises(ValueError, match=r"got -2"):
        sample_label_sets(-2, ((1, 7),), 0.5, rng)


def test_a_negative_split_size_names_the_field():
    with pytest.raises(ValueError, match=r"n_val must be 0 or more canvases, got -1"):
        make_multi_digit(MultiDigitConfig(n_train=5, n_val=-1, n_test=5), _flat_source())


def test_partner_rate_refuses_a_label_index_the_targets_lack():
    targets = torch.tensor([[1, 0, 1], [0, 1, 1]])
    assert partner_rate(targets, 0, 2) == 1.0
    with pytest.raises(ValueError, match=r"digit -1 is not a label of these targets \(0\.\.2\)"):
        partner_rate(targets, -1, 2)  # -1 used to mean the last column
    with pytest.raises(ValueError, match=r"partner 3 is not a label"):
        partner_rate(targets, 0, 3)


def test_a_digit_in_two_pairs_names_both_pairs():
    with pytest.raises(ValueError, match=r"digit 1 is in two pairs, \(1, 7\) and \(1, 4\)"):
        sample_label_sets(3, ((1, 7), (1, 4)), 0.5, np.random.default_rng(0))


# --- splits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_random_split_refuses_a_count_that_is_not_a_whole_number_naming_it(n):
    with pytest.raises(ValueError, match=rf"whole number of images \(0 or more\), got {n!r}"):
        random_split_indices(n, {"train": 0.5, "val": 0.5})


@pytest.mark.parametrize("bad", [0.0, -0.2, float("nan")])
def test_a_part_with_a_fraction_that_is_not_positive_is_named(bad):
    with pytest.raises(ValueError, match=rf"part 'val' has {bad!r}"):
        stratified_split(torch.eye(4), {"train": 0.5, "val": bad, "test": 0.5})


# --- the image-folder data set -----------------------------------------------------------


def test_an_index_past_the_end_names_the_index_and_the_size(tmp_path):
    Image.new("L", (4, 4), 9).save(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("image,tags\na.png,cat\n")
    data = MultiLabelImageFolder(tmp_path, tmp_path / "labels.csv")
    assert data[-1][1].tolist() == [1.0]
    with pytest.raises(IndexError, match=r"index 1 is out of range for 1 images"):
        data[1]
    with pytest.raises(IndexError, match=r"index -2 is out of range"):
        data[-2]


# --- training support --------------------------------------------------------------------


def test_grad_cam_refuses_a_label_the_model_lacks_and_no_label():
    model = SmallCNN(n_labels=3, width=4, blocks=2).eval()
    image = torch.rand(1, 32, 32)
    with pytest.raises(
        ValueError, match=r"label -1 is not one of the model's 3 outputs \(0\.\.2\)"
    ):
        grad_cam(model, model.features[-1], image, [0, -1])
    with pytest.raises(ValueError, match=r"label 3 is not one of"):
        grad_cam(model, model.features[-1], image, [3])
    with pytest.raises(ValueError, match="labels is empty"):
        grad_cam(model, model.features[-1], image, [])
    assert model.training is False  # restored after the refusal


def test_timing_refuses_no_repeats_and_a_speed_report_no_time():
    with pytest.raises(ValueError, match=r"repeats must be at least 1 .*got 0"):
        time_side_by_side({"a": lambda: None}, 0, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"train_seconds must be positive, got nan"):
        speed_report(None, float("nan"))


@pytest.mark.parametrize("n", [-1, 7])
def test_gather_and_interleave_refuse_more_samples_than_rows(n):
    parts = [torch.arange(3), torch.arange(3)]  # 6 rows from two ranks
    with pytest.raises(ValueError, match=rf"n = {n} samples, but the ranks hold 6 rows"):
        distributed.interleave(parts, n)
    with pytest.raises(ValueError, match=rf"n = {n} samples, but the ranks hold 6 rows"):
        distributed.gather(torch.arange(6), n)  # one process


# --- prediction -------------------------------------------------------------------------------


def test_preprocessing_with_the_wrong_number_of_means_names_the_counts():
    with pytest.raises(ValueError, match=r"got 1 and 3: mean \(0\.5,\), std"):
        Preprocessing(channels=3, mean=(0.5,), std=(0.2, 0.2, 0.2))


@pytest.mark.parametrize(
    ("vocab", "match"),
    [
        (["cat", "cat"], r"got 'cat' twice \(positions \[0, 1\]\)"),
        (["cat", 7], r"got 7 \(int\) at position 1"),
    ],
)
def test_a_stored_vocabulary_names_the_entry_at_fault(tmp_path, vocab, match):
    from helpers import predict

    path = tmp_path / "c.pt"
    arch = {"name": "SmallCNN", "kwargs": {"n_labels": 2, "width": 4, "blocks": 1}}
    model = SmallCNN(n_labels=2, width=4, blocks=1)
    save_classifier(path, model, arch, ["cat", "dog"], Preprocessing(image_size=8), 0.5)
    state = torch.load(path, weights_only=True)
    state["vocab"] = vocab
    state["sha256"] = predict._checksum(state)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"field 'vocab' must be a non-empty list .*" + match):
        load_classifier(path)


# --- scripts ----------------------------------------------------------------------------------


def _script(*args: str):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, *args], cwd=root, capture_output=True, text=True, timeout=120
    )


def test_train_ddp_refuses_sync_bn_on_cpu_before_building_any_data():
    result = _script("scripts/train_ddp.py", "--sync-bn", "--n-train", "64", "--n-val", "8")
    assert result.returncode != 0
    assert "--sync-bn needs GPUs" in result.stderr
    assert "per-process batch" not in result.stdout  # refused before the data is built


def test_benchmark_script_names_a_folder_that_is_not_in_voc_layout(tmp_path):
    result = _script("scripts/benchmark_voc_step.py", "--quick", "--device", "cpu", "--voc",
                     str(tmp_path))  # fmt: skip
    assert result.returncode != 0
    assert f"{tmp_path} is not a folder in VOC layout" in result.stderr
