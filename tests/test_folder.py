"""Every bad-input case of helpers.folder, with files each test writes itself."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers.data import DIGITS, MultiDigit
from helpers.folder import (
    MultiLabelImageFolder,
    load_image,
    read_label_table,
    save_as_folder,
    split_tags,
)


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _png(path: Path, value: int = 128, mode: str = "L", size=(6, 4)) -> Path:
    Image.new(mode, size, value).save(path)
    return path


def _folder(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    """Write one small PNG per row and a labels.csv; return the CSV path."""
    for name, _ in rows:
        _png(tmp_path / name)
    lines = ["image,tags"] + [f'{name},"{tags}"' for name, tags in rows]
    return _write_csv(tmp_path / "labels.csv", "\n".join(lines) + "\n")


# ---- split_tags and read_label_table ------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "sep", "expected"),
    [
        ("3 7", None, ["3", "7"]),
        ("  3   7 ", None, ["3", "7"]),
        ("dog,ball", ",", ["dog", "ball"]),
        ("dog, traffic light ,", ",", ["dog", "traffic light"]),
        ("3 3 7", None, ["3", "7"]),
        ("", None, []),
        ("", ",", []),
    ],
)
def test_split_tags(cell, sep, expected):
    assert split_tags(cell, sep) == expected


def test_read_label_table_space_separated(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", "image,tags\na.png,3 7\nb.png,1\nc.png,\n")
    table = read_label_table(csv)
    assert table["image"].tolist() == ["a.png", "b.png", "c.png"]
    assert table["tags"].tolist() == [["3", "7"], ["1"], []]
    assert table["line"].tolist() == [2, 3, 4]


def test_read_label_table_detects_commas_and_keeps_spaces_inside_tags(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", 'image,tags\na.png,"dog,traffic light"\nb.png,cat\n')
    assert read_label_table(csv)["tags"].tolist() == [["dog", "traffic light"], ["cat"]]


def test_read_label_table_explicit_separator_and_column_names(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", "file,labels,extra\na.png,x;y,1\n")
    table = read_label_table(csv, image_col="file", tags_col="labels", sep=";")
    assert table["tags"].tolist() == [["x", "y"]]


def test_read_label_table_tag_that_looks_like_a_number_stays_a_string(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", "image,tags\n001.png,7\n")
    table = read_label_table(csv)
    assert table["tags"].tolist() == [["7"]] and table["image"].tolist() == ["001.png"]


def test_missing_column_names_the_file_and_the_column(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", "image,labels\na.png,3\n")
    with pytest.raises(ValueError, match=r"l\.csv: no column 'tags'.*\['image', 'labels'\]"):
        read_label_table(csv)


def test_empty_image_cell_names_the_line(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", "image,tags\na.png,3\n,7\n")
    with pytest.raises(ValueError, match=r"l\.csv, line 3: the 'image' cell is empty"):
        read_label_table(csv)


def test_duplicate_image_names_the_lines(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", "image,tags\na.png,3\nb.png,1\na.png,7\n")
    with pytest.raises(ValueError, match=r"'a\.png' is listed more than once \(lines 2, 4\)"):
        read_label_table(csv)


def test_unquoted_comma_tags_in_every_row_are_not_silently_shifted(tmp_path):
    # Every row has one field more than the header: pandas would make `image` the index.
    csv = _write_csv(tmp_path / "l.csv", "image,tags\na.png,3,7\nb.png,1,2\n")
    assert not isinstance(pd.read_csv(csv, dtype=str).index, pd.RangeIndex)  # the trap
    with pytest.raises(ValueError, match=r'l\.csv: .*quote tag cells .*a\.png,"3,7"'):
        read_label_table(csv)


def test_unquoted_comma_tags_in_some_rows_name_the_file(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", "image,tags\na.png,3\nb.png,1,2,4\n")
    with pytest.raises(ValueError, match=r'l\.csv: .*line 3.*quote tag cells .*a\.png,"3,7"'):
        read_label_table(csv)


def test_empty_file_names_the_file(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", "")
    with pytest.raises(ValueError, match=r"l\.csv: No columns to parse"):
        read_label_table(csv)


def test_quoted_comma_tags_still_read(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", 'image,tags\na.png,"3,7"\nb.png,1\n')
    assert read_label_table(csv)["tags"].tolist() == [["3", "7"], ["1"]]


# ---- load_image --------------------------------------------------------------------------


def test_grayscale_becomes_rgb_by_copying(tmp_path):
    image = load_image(_png(tmp_path / "g.png", 77), mode="RGB")
    assert image.mode == "RGB"
    assert (np.asarray(image) == 77).all()


def test_rgb_becomes_grayscale_by_luminance(tmp_path):
    path = tmp_path / "c.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(path)
    image = load_image(path, mode="L")
    assert image.mode == "L"
    assert (np.asarray(image) == 76).all()  # ITU-R 601: 0.299 * 255


def test_rgba_is_composited_over_black_not_stripped(tmp_path):
    pixels = np.zeros((1, 3, 4), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0, 0)  # red hidden under full transparency
    pixels[0, 1] = (255, 0, 0, 255)  # opaque red
    pixels[0, 2] = (200, 100, 50, 128)  # half transparent
    path = tmp_path / "a.png"
    Image.fromarray(pixels, mode="RGBA").save(path)
    rgb = np.asarray(load_image(path)).astype(int)
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[0, 1].tolist() == [255, 0, 0]
    assert np.abs(rgb[0, 2] - np.array([200, 100, 50]) * 128 / 255).max() <= 1
    assert np.asarray(Image.open(path).convert("RGB"))[0, 0].tolist() == [255, 0, 0]  # PIL's way


def test_palette_with_transparency_and_la_modes(tmp_path):
    la = tmp_path / "la.png"
    Image.fromarray(np.array([[[200, 0], [200, 255]]], dtype=np.uint8), mode="LA").save(la)
    assert np.asarray(load_image(la, mode="L")).tolist() == [[0, 200]]
    p = Image.new("P", (2, 1), 1)
    p.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    p.info["transparency"] = 1
    p.save(tmp_path / "p.png", transparency=1)
    assert np.asarray(load_image(tmp_path / "p.png", mode="L")).tolist() == [[0, 0]]


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    expected = np.round(values / 257).astype(np.uint8)
    assert np.array_equal(np.asarray(load_image(path, mode="L")), expected)
    assert np.array_equal(np.asarray(load_image(path, mode="RGB"))[..., 1], expected)
    assert np.asarray(Image.open(path).convert("L")).tolist()[0][2] == 255  # PIL clips


def test_32_bit_tiff_holding_8_bit_values_is_refused_not_scaled_as_16_bit(tmp_path):
    # Image.fromarray of int32 data is mode "I": 200 must not become round(200 / 257) = 1
    path = tmp_path / "32.tif"
    Image.fromarray(np.array([[0, 200, 255]], dtype=np.int32), mode="I").save(path)
    assert Image.open(path).mode == "I"
    with pytest.raises(ValueError, match=r"32\.tif: 32-bit integer image .*TIFF.* 0\.\.255"):
        load_image(path, mode="L")


def test_32_bit_pgm_is_scaled_by_its_declared_white_level(tmp_path):
    # a PGM with maxval 65535 opens as mode "I"; its white level is the file's maxval
    path = tmp_path / "16.pgm"
    values = np.array([[0, 200, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I"
    expected = np.round(values / 257).astype(np.uint8)
    assert np.array_equal(np.asarray(load_image(path, mode="L")), expected)


def _image_of_mode(mode: str) -> Image.Image:
    grey = np.array([[0, 100, 200, 255]], dtype=np.uint8)
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode in ("RGBA", "LA"):
        image = Image.fromarray(grey).convert(mode)
        image.putalpha(255)
        return image
    return Image.fromarray(grey).convert(mode)  # "L"; "P" gets the web palette


_MODE_FILES = [("I;16", "png"), ("L", "png"), ("RGBA", "png"), ("LA", "png"), ("P", "png"),
               ("I", "pgm")]  # fmt: skip


@pytest.mark.parametrize(("mode", "suffix"), _MODE_FILES)
def test_every_greyscale_mode_reads_as_the_8_bit_values_it_holds(tmp_path, mode, suffix):
    path = tmp_path / f"{mode.replace(';', '_')}.{suffix}"
    image = _image_of_mode("I;16" if mode == "I" else mode)
    image.save(path)
    assert Image.open(path).mode == mode
    expected = [[0, 100, 200, 255]] if mode != "P" else np.asarray(image.convert("L")).tolist()
    assert np.asarray(load_image(path, mode="L")).tolist() == expected


def test_32_bit_tiff_with_negative_values_is_refused_naming_them(tmp_path):
    path = tmp_path / "s.tif"
    Image.fromarray(np.array([[-5, 300]], dtype=np.int32), mode="I").save(path)
    with pytest.raises(ValueError, match=r"s\.tif: .*values -5\.\.300"):
        load_image(path)


def test_float_image_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5, 300.0]], dtype=np.float32), mode="F").save(path)
    assert Image.open(path).mode == "F"
    with pytest.raises(ValueError, match=r"f\.tif: floating-point image \(mode 'F'\)"):
        load_image(path, mode="L")


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 3), dtype=np.uint8)
    pixels[0, 0] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rot.jpg"
    image.save(path, exif=exif, quality=100)
    loaded = np.asarray(load_image(path, mode="L"))
    assert loaded.shape == (3, 2)
    assert loaded[0, 1] > 200  # the bright corner moved to the top right


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", None],  # None: a PNG cut off half-way
    ids=["empty", "text", "truncated"],
)
def test_corrupt_file_names_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    if content is None:
        good = _png(tmp_path / "good.png", mode="RGB", size=(64, 64))
        noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(good)
        content = good.read_bytes()[:400]
    path.write_bytes(content)
    with pytest.raises(OSError, match=r"cannot decode .*broken\.png"):
        load_image(path)


def test_missing_file_and_bad_mode(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="mode must be one of"):
        load_image(_png(tmp_path / "g.png"), mode="CMYK")


# ---- MultiLabelImageFolder ---------------------------------------------------------------


def test_dataset_items_targets_and_vocab(tmp_path):
    csv = _folder(tmp_path, [("a.png", "3 7"), ("b.png", "1"), ("c.png", "")])
    ds = MultiLabelImageFolder(tmp_path, csv)
    assert len(ds) == 3 and ds.vocab == ["1", "3", "7"]
    assert ds.targets.tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0]]
    x, y = ds[0]
    assert x.shape == (3, 4, 6) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 128 / 255))
    assert y.tolist() == [0, 1, 1]
    assert ds.no_tags == ["c.png"]
    assert "1 without tags" in repr(ds)


def test_dataset_fixed_vocab_grayscale_and_transform(tmp_path):
    csv = _folder(tmp_path, [("a.png", "3 7")])
    ds = MultiLabelImageFolder(tmp_path, csv, vocab=DIGITS, mode="L", transform=lambda x: x * 2)
    x, y = ds[0]
    assert x.shape == (1, 4, 6) and torch.allclose(x, torch.full_like(x, 2 * 128 / 255))
    assert y.shape == (10,) and y[3] == 1 and y[7] == 1 and y.sum() == 2


def test_dataset_accepts_a_table(tmp_path):
    csv = _folder(tmp_path, [("a.png", "x")])
    ds = MultiLabelImageFolder(tmp_path, read_label_table(csv))
    assert ds.vocab == ["x"]


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (pd.DataFrame({"image": ["a.png"], "tags": [["x"]]}), r"missing column 'line'"),
        (pd.DataFrame({"file": ["a.png"], "tags": ["x"]}), r"missing column 'image'"),
        (
            pd.DataFrame({"image": ["a.png"], "tags": ["x"], "line": [2]}),
            r"the 'tags' column holds str values",
        ),
    ],
)
def test_raw_dataframe_is_rejected(tmp_path, table, match):
    _png(tmp_path / "a.png")
    start = r"table must be a CSV path or the output of read_label_table; "
    with pytest.raises(ValueError, match=start + match):
        MultiLabelImageFolder(tmp_path, table)


def test_unknown_tag_names_the_line_and_file(tmp_path):
    csv = _folder(tmp_path, [("a.png", "3"), ("b.png", "3 seven")])
    with pytest.raises(KeyError, match=r"line 3 \(b\.png\): tag 'seven' is not in the vocabulary"):
        MultiLabelImageFolder(tmp_path, csv, vocab=DIGITS)


def test_empty_tags_rejected_when_not_allowed(tmp_path):
    csv = _folder(tmp_path, [("a.png", "3"), ("b.png", ""), ("c.png", "")])
    with pytest.raises(ValueError, match=r"2 image\(s\) have no tags, first at line 3 \(b\.png\)"):
        MultiLabelImageFolder(tmp_path, csv, allow_empty=False)


def test_missing_image_file_fails_at_construction(tmp_path):
    csv = _folder(tmp_path, [("a.png", "3"), ("b.png", "1")])
    (tmp_path / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\).*line 3 \(b\.png\)"):
        MultiLabelImageFolder(tmp_path, csv)


def test_corrupt_file_fails_when_read_naming_it(tmp_path):
    csv = _folder(tmp_path, [("a.png", "3")])
    (tmp_path / "a.png").write_bytes(b"garbage")
    ds = MultiLabelImageFolder(tmp_path, csv)
    with pytest.raises(OSError, match=r"cannot decode .*a\.png"):
        ds[0]


def test_bad_dataset_mode(tmp_path):
    csv = _folder(tmp_path, [("a.png", "3")])
    with pytest.raises(ValueError, match="mode must be one of"):
        MultiLabelImageFolder(tmp_path, csv, mode="RGBA")


# ---- save_as_folder round trip -----------------------------------------------------------


def test_save_as_folder_round_trips_images_and_targets(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8, generator=g)
    targets = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]] * 4 + [[0] * 10]).float()
    ds = MultiDigit(images, targets, targets.long(), "test")
    csv = save_as_folder(ds, tmp_path / "out", DIGITS)
    assert csv == tmp_path / "out" / "labels.csv"
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert table.columns.tolist() == ["image", "tags"]
    assert table["tags"].tolist() == ["0 3"] * 4 + [""]
    back = MultiLabelImageFolder(tmp_path / "out", csv, vocab=DIGITS, mode="L")
    assert torch.equal(back.targets, targets)
    for i in range(5):
        x, _ = back[i]
        assert torch.equal((x * 255).round().to(torch.uint8), images[i])


def test_save_as_folder_rgb(tmp_path):
    x = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(1))
    csv = save_as_folder([(x, torch.tensor([0.0, 1.0]))], tmp_path, ["a", "b"], sep=",")
    back = MultiLabelImageFolder(tmp_path, csv, vocab=["a", "b"])
    assert torch.allclose(back[0][0], (x * 255).round() / 255)
    assert back.table["tags"].tolist() == [["b"]]


# ---- refusals: mixed separators, decompression bombs, one conversion ------------------------


def test_mixed_separators_are_refused_naming_a_line_of_each(tmp_path):
    csv = _write_csv(tmp_path / "l.csv", 'image,tags\na.png,"3,7"\nb.png,1\nc.png,2 5\n')
    with pytest.raises(ValueError, match=r"l\.csv: .*mix separators: line 2 uses commas .*line 4"):
        read_label_table(csv)
    assert read_label_table(csv, sep=",").tags.tolist() == [["3", "7"], ["1"], ["2 5"]]


def test_decompression_bomb_is_refused_by_the_folder_data_set(tmp_path, monkeypatch):
    csv = _folder(tmp_path, [("a.png", "3")])
    ds = MultiLabelImageFolder(tmp_path, csv)
    with pytest.raises(ValueError, match=r"a\.png: 6x4 = 24 pixels is over the limit of 20"):
        load_image(tmp_path / "a.png", max_pixels=20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # the 6x4 image is 24 > 2 x 10
    with pytest.raises(ValueError, match=r"a\.png: Image size .* decompression bomb"):
        ds[0]


def test_image_to_tensor_is_the_canvas_exactly_and_torchvision_to_one_bit():
    from torchvision.transforms.v2.functional import to_dtype, to_image

    from helpers.folder import image_to_tensor

    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = image_to_tensor(Image.fromarray(values))
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x[0], torch.from_numpy(values).float() / 255)  # as MultiDigit divides
    scaled = to_dtype(to_image(Image.fromarray(values)), torch.float32, scale=True)
    torch.testing.assert_close(x, scaled, rtol=0, atol=1e-7)
    rgb = image_to_tensor(Image.new("RGB", (3, 2), (255, 0, 51)))
    assert (
        rgb.shape == (3, 2, 3)
        and rgb[:, 0, 0].tolist() == torch.tensor([1.0, 0.0, 51 / 255]).tolist()
    )
