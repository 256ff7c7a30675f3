"""A folder of image files plus a label table: how real multi-label data sets ship.

The table is a CSV with one row per image: a column naming the file and a column of tags
separated by spaces ("3 7") or commas ("dog,ball"). Everything that can go wrong with such
data (a missing column, a file that is not there, a file that does not decode, an image in
an unexpected mode, a tag nobody declared) fails here with the file or row named, or is
converted in one documented way, so it cannot fail silently in the middle of an epoch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import to_dtype, to_image

from helpers.labels import build_vocab, check_targets, multi_hot

__all__ = [
    "MODES",
    "MultiLabelImageFolder",
    "SIXTEEN_BIT",
    "TABLE_COLUMNS",
    "image_to_tensor",
    "load_image",
    "read_label_table",
    "save_as_folder",
    "split_tags",
]

MODES = ("RGB", "L")
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")  # "I" is 32-bit: see _to_8bit
TABLE_COLUMNS = ("image", "tags", "line")


def split_tags(cell: str, sep: str | None = None) -> list[str]:
    """'3 7' -> ['3', '7']; with sep=',' 'dog, ball' -> ['dog', 'ball']. Empty -> [].

    Pieces are stripped, empty pieces dropped ('3,,7,' is ['3', '7']) and repeats kept once.
    """
    pieces = cell.split(sep) if sep is not None else cell.split()
    return list(dict.fromkeys(p.strip() for p in pieces if p.strip()))


def read_label_table(
    csv_path: str | Path,
    image_col: str = "image",
    tags_col: str = "tags",
    sep: str | None = None,
) -> pd.DataFrame:
    """Read a label CSV into columns ``image`` (file name), ``tags`` (list of str) and
    ``line`` (its line number in the file, for error messages).

    ``sep=None`` detects the tag separator: commas if any tag cell contains one, else
    whitespace. A file where some cells use commas and others spaces ("3,7" and "3 7") is
    refused, naming a line of each: either reading would silently make a tag "3 7" or
    "3,7". Pass ``sep`` when tags themselves contain spaces ("traffic light").

    Comma-separated tags must be quoted (``a.png,"3,7"``). Unquoted, pandas either fails
    with a bare ParserError or, when every row has the same extra fields, silently makes
    the image column the index and shifts the rest: both become a ValueError naming the file.
    """
    csv_path = Path(csv_path)
    table = _read_csv(csv_path)
    missing = [col for col in (image_col, tags_col) if col not in table.columns]
    if missing:
        raise ValueError(
            f"{csv_path}: no column {missing[0]!r}; the columns are {list(table.columns)} "
            f"(pass image_col= / tags_col= if yours are named differently)"
        )
    lines = np.arange(len(table)) + 2  # line 1 is the header
    names = _image_names(table[image_col], lines, csv_path)
    if sep is None:
        sep = _detect_separator(table[tags_col], lines, csv_path)
    return pd.DataFrame(
        {
            "image": names,
            "tags": [split_tags(cell, sep) for cell in table[tags_col]],
            "line": lines,
        }
    )


_QUOTE_HINT = 'quote tag cells that contain commas: a.png,"3,7"'


def _read_csv(csv_path: Path) -> pd.DataFrame:
    """The CSV as strings ("" stays "", not NaN); a malformed file is refused naming it."""
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{csv_path}: {str(err).strip()}; {_QUOTE_HINT}") from err
    if not isinstance(table.index, pd.RangeIndex):  # rows with more fields than the header
        raise ValueError(f"{csv_path}: some rows have more fields than the header; {_QUOTE_HINT}")
    return table


def _image_names(cells: pd.Series, lines: np.ndarray, csv_path: Path) -> pd.Series:
    """The stripped file names; an empty cell or a file listed twice is refused by line."""
    names = cells.str.strip()
    if (names == "").any():
        line = lines[(names == "").to_numpy()][0]
        raise ValueError(f"{csv_path}, line {line}: the {cells.name!r} cell is empty")
    repeated = names.duplicated(keep=False).to_numpy()
    if repeated.any():
        raise ValueError(
            f"{csv_path}: {names[repeated].iloc[0]!r} is listed more than once "
            f"(lines {', '.join(map(str, lines[repeated][:5]))}); merge its tags into one row"
        )
    return names


def _detect_separator(cells: pd.Series, lines: np.ndarray, csv_path: Path) -> str | None:
    """The separator: a comma if any tag cell holds one, else None (whitespace); a mix is
    refused, naming a line of each."""
    commas = cells.str.contains(",").to_numpy()
    spaces = cells.str.strip().str.contains(r"\s").to_numpy() & ~commas
    if commas.any() and spaces.any():
        i, k = int(np.argmax(commas)), int(np.argmax(spaces))
        raise ValueError(
            f"{csv_path}: the tag cells mix separators: line {lines[i]} uses commas "
            f"({cells.iloc[i]!r}), line {lines[k]} spaces ({cells.iloc[k]!r}); use one "
            "separator, or pass sep=',' if tags themselves contain spaces ('traffic light')"
        )
    return "," if commas.any() else None


# The white level of a 32-bit integer ("I") image, by file format: the ones that declare it.
# A 16-bit greyscale PNG opens as "I" in older Pillow ("I;16" in Pillow 13); a PGM/PPM with
# maxval > 255 opens as "I" with Pillow's scaling of maxval to 65535. A 32-bit or signed
# integer TIFF declares no white level: it is refused, naming the file.
_WHITE_OF_32_BIT = {"PNG": 65535, "PPM": 65535}


def _to_8bit(image: Image.Image, file_format: str | None, path: Path) -> Image.Image:
    """16-bit (and 32-bit integer) greyscale -> 8-bit by scaling the file's white level to 255.

    PIL's own ``convert("L")`` clips instead: every value above 255 becomes white. The white
    level is what the file declares: 65535 for the 16-bit modes, :data:`_WHITE_OF_32_BIT`
    for a mode "I" image. A mode "I" file that declares none (a 32-bit integer TIFF) is
    refused: 200 in it could be white (8-bit data saved as 32 bits) or almost black, and
    guessing from the largest value would stretch a dark image to white.
    """
    values = np.asarray(image, dtype=np.int64)  # within 0..white for every format accepted
    if image.mode in SIXTEEN_BIT:
        white = 65535
    else:
        white = _WHITE_OF_32_BIT.get(file_format)
        if white is None:
            low, high = int(values.min()), int(values.max())
            raise ValueError(
                f"{path}: 32-bit integer image (mode 'I', {file_format} file) holding values "
                f"{low}..{high}; its format declares no white level, so there is no honest "
                "scale to 8 bits: convert it to 8-bit ('L') or 16-bit ('I;16') yourself"
            )
    return Image.fromarray(np.round(values / (white / 255)).astype(np.uint8), mode="L")


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image -> float32 tensor (C, H, W) in [0, 1]. The one conversion every data set
    and prediction uses.

    torchvision's ``to_image`` makes the (C, H, W) tensor and ``to_dtype`` the float32 copy;
    the scaling is a division by 255, not ``to_dtype(scale=True)``, which multiplies by
    1/255: that differs in the last bit for 126 of the 256 pixel values, and the digit
    canvases every chapter trains on are divided by 255 (``helpers.data.MultiDigit``). So a
    canvas saved as PNG and read back is bit-identical to the canvas the model saw.
    """
    return to_dtype(to_image(image), torch.float32).div_(255)


def _check_pixels(path: str | Path, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image file from its header alone, refusing a decompression bomb.

    A few hundred kilobytes of PNG can decode to gigabytes, so more pixels than
    ``max_pixels`` (default: PIL's limit, ``PIL.Image.MAX_IMAGE_PIXELS``, about 89 million)
    raise ValueError naming the file before anything is decoded. ``max_pixels`` can only
    lower PIL's limit; raising that is a deliberate ``Image.MAX_IMAGE_PIXELS = ...``.
    A file that is not an image raises OSError ("cannot decode ...").
    """
    path = Path(path)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as header:  # reads the header only: cheap at any size
                width, height = header.size
    except FileNotFoundError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"{path}: {err} Downscale the file first.") from None
    except UnidentifiedImageError:
        raise OSError(f"cannot decode {path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise OSError(f"cannot decode {path}: {err}") from err
    if limit is not None and width * height > limit:
        raise ValueError(
            f"{path}: {width}x{height} = {width * height:,} pixels is over the limit of "
            f"{limit:,}; downscale the file first, or raise max_pixels if you trust it"
        )
    return width, height


def load_image(path: str | Path, mode: str = "RGB", max_pixels: int | None = None) -> Image.Image:
    """Open an image file as ``mode`` ("RGB" or "L"), the same way whatever the file holds.

    - a decompression bomb (more pixels than ``max_pixels``, see :func:`_check_pixels`) is
      refused with ValueError naming the file, before anything is decoded;
    - a file that does not decode raises OSError naming the file (PIL alone sometimes
      only says "image file is truncated");
    - the EXIF orientation of camera photos is applied, as image viewers do;
    - 16-bit greyscale is scaled to 8 bits (65535 -> 255), not clipped; a 32-bit integer
      image (mode "I") is scaled by the white level its format declares (65535 for PNG and
      PGM) and refused, naming the file, when it declares none (a 32-bit TIFF);
    - a floating-point image (mode "F") raises ValueError: its value range is not
      standard (0..1? 0..255? physical units?), and PIL would silently clip it;
    - transparency is composited over black, so the colour hidden under transparent
      pixels cannot leak in;
    - greyscale <-> RGB follows PIL (grey copied to 3 channels; RGB -> L by luminance).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    path = Path(path)
    _check_pixels(path, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked above
            with Image.open(path) as opened:
                opened.load()  # decode now: a truncated file fails here, not later
                file_format = opened.format  # the transposed copy has none
                image = ImageOps.exif_transpose(opened)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:  # PIL raises all three on bad files
        raise OSError(f"cannot decode {path}: {err}") from err
    if image.mode == "F":
        raise ValueError(
            f"{path}: floating-point image (mode 'F'); there is no standard range to "
            "scale it from, so convert it to 8 bits yourself"
        )
    if image.mode in (*SIXTEEN_BIT, "I"):
        image = _to_8bit(image, file_format, path)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert(mode)


def _check_table(table: pd.DataFrame) -> None:
    """A DataFrame passed to the dataset must come from read_label_table (lists of tags)."""
    start = "table must be a CSV path or the output of read_label_table"
    missing = [col for col in TABLE_COLUMNS if col not in table.columns]
    if missing:
        raise ValueError(f"{start}; missing column {missing[0]!r} (it has {list(table.columns)})")
    not_lists = [tags for tags in table["tags"] if not isinstance(tags, list)]
    if not_lists:
        raise ValueError(
            f"{start}; the 'tags' column holds {type(not_lists[0]).__name__} values such as "
            f"{not_lists[0]!r}, not lists of tags"
        )


class MultiLabelImageFolder(Dataset):
    """(image, multi-hot target) pairs from ``root/<file>`` and a label table.

    ``table`` is a CSV path or the DataFrame from :func:`read_label_table`. Everything is
    checked when the dataset is built (files exist, tags are in ``vocab``), so a bad row
    fails in seconds instead of mid-epoch. A decompression bomb is refused when its item is
    read (:func:`load_image`). Images come out as float tensors (C, H, W) in
    [0, 1], like ``helpers.data.MultiDigit``, and ``transform`` (e.g. torchvision v2) is
    applied to that tensor.

    An image with no tags is a legitimate target (all zeros) and is listed in
    ``no_tags``; pass ``allow_empty=False`` where every image must carry a label.
    """

    def __init__(
        self,
        root: str | Path,
        table: str | Path | pd.DataFrame,
        vocab: Sequence[str] | None = None,
        transform=None,
        mode: str = "RGB",
        allow_empty: bool = True,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.root, self.mode, self.transform = Path(root), mode, transform
        if isinstance(table, pd.DataFrame):
            _check_table(table)
            self.table = table
        else:
            self.table = read_label_table(table)
        where = [
            f"line {line} ({name})"
            for line, name in zip(self.table.line, self.table.image, strict=True)
        ]

        missing = [
            w
            for w, name in zip(where, self.table.image, strict=True)
            if not (self.root / name).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image file(s) listed in the table are not in {self.root}: "
                + ", ".join(missing[:5])
                + (" ..." if len(missing) > 5 else "")
            )
        self.vocab = list(vocab) if vocab is not None else build_vocab(self.table.tags)
        known = set(self.vocab)
        for w, tags in zip(where, self.table.tags, strict=True):
            unknown = [t for t in tags if t not in known]
            if unknown:
                raise KeyError(f"{w}: tag {unknown[0]!r} is not in the vocabulary {self.vocab}")
        self.no_tags = [
            name for name, tags in zip(self.table.image, self.table.tags, strict=True) if not tags
        ]
        if self.no_tags and not allow_empty:
            first = where[[len(t) for t in self.table.tags].index(0)]
            raise ValueError(
                f"{len(self.no_tags)} image(s) have no tags, first at {first}; "
                "allow_empty=True accepts them as all-zero targets"
            )
        self.targets = multi_hot(self.table.tags, self.vocab)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):  # pandas would say only "out-of-bounds"
            raise IndexError(f"index {i} is out of range for {len(self)} images")
        image = load_image(self.root / self.table.image.iloc[i], self.mode)
        x = image_to_tensor(image)  # (C, H, W) in [0, 1]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[i]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} images, {len(self.vocab)} labels, "
            f"{len(self.no_tags)} without tags, mode={self.mode!r}, root='{self.root}')"
        )


def save_as_folder(
    dataset: Dataset, folder: str | Path, vocab: Sequence[str], sep: str = " "
) -> Path:
    """Write a dataset of (image in [0, 1], multi-hot target) pairs as PNG files plus
    ``labels.csv`` (columns ``image``, ``tags``); return the CSV's path.

    Images are stored as 8-bit greyscale (1 channel) or RGB (3 channels).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(len(dataset)):
        x, target = dataset[i]
        pixels = (torch.as_tensor(x).clamp(0, 1) * 255).round().to(torch.uint8)
        pixels = pixels[0] if pixels.shape[0] == 1 else pixels.permute(1, 2, 0)
        name = f"{i:05d}.png"
        Image.fromarray(pixels.numpy()).save(folder / name)
        target = check_targets(target, (len(vocab),), f"target of item {i}")
        tags = [vocab[j] for j in torch.nonzero(target).flatten().tolist()]
        rows.append({"image": name, "tags": sep.join(tags)})
    csv_path = folder / "labels.csv"
    pd.DataFrame(rows, columns=["image", "tags"]).to_csv(csv_path, index=False)
    return csv_path
