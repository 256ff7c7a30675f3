"""PASCAL VOC 2007 as a multi-label data set: find the folder, parse, load.

VOC ships object annotations (one XML file per image, one ``<object>`` per instance), not
image labels. An image's multi-label target is the set of classes with at least one
instance. Instances flagged ``<difficult>1</difficult>`` are objects the annotators judged
hard to recognise; the published multi-label tables (ML-GCN, CSRA) *ignore* a class in
evaluation for an image whose only instances of it are difficult, and ML-GCN's training
code counts such a class as present. Both choices are made explicit here.

Every loader accepts any folder in VOC layout (``Annotations/*.xml``, ``JPEGImages/*.jpg``,
``ImageSets/Main/<split>.txt``), so the same code runs on the real data and on test data.
Bad input fails with the file named. The download is :mod:`helpers.voc_download`, writing
the layout :mod:`helpers.voc_layout`, training and evaluating :mod:`helpers.voc_training`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from helpers.folder import image_to_tensor, load_image

__all__ = [
    "DIFFICULT_POLICIES",
    "VOCMultiLabel",
    "VOCObject",
    "VOC_CLASSES",
    "find_voc",
    "image_target",
    "parse_annotation",
]


VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


DIFFICULT_POLICIES = ("positive", "negative")


# --- Finding the data ---------------------------------------------------------------------


def find_voc(root: str | Path) -> Path | None:
    """The VOC-layout folder at `root` or at ``root/VOCdevkit/VOC2007``, else None.

    A folder counts when it has ``Annotations``, ``JPEGImages`` and ``ImageSets/Main``.
    """
    root = Path(root)
    for folder in (root, root / "VOCdevkit" / "VOC2007"):
        if all((folder / sub).is_dir() for sub in ("Annotations", "JPEGImages", "ImageSets/Main")):
            return folder
    return None


# --- Annotations --------------------------------------------------------------------------


@dataclass(frozen=True)
class VOCObject:
    name: str
    difficult: bool
    truncated: bool


def _flag(obj: ET.Element, tag: str, path: Path) -> bool:
    text = (obj.findtext(tag) or "0").strip()
    if text not in ("0", "1"):
        raise ValueError(f"{path}: <{tag}> must be 0 or 1, not {text!r}")
    return text == "1"


def parse_annotation(path: str | Path, classes: Sequence[str] = VOC_CLASSES) -> dict:
    """One VOC XML file -> ``{"filename": str, "objects": [VOCObject, ...]}``.

    Errors name the file: XML that does not parse, an object with a class not in
    `classes`, an ``<object>`` without a name, or an image with no objects at all (every
    VOC 2007 image has at least one, so an empty file means a broken export).
    """
    path = Path(path)
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        raise ValueError(f"{path}: not valid XML ({err})") from err
    root = tree.getroot()
    filename = (root.findtext("filename") or "").strip()
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"{path}: an <object> has no <name>")
        if name not in classes:
            raise KeyError(f"{path}: unknown class {name!r}; the classes are {list(classes)}")
        objects.append(
            VOCObject(name, _flag(obj, "difficult", path), _flag(obj, "truncated", path))
        )
    if not objects:
        raise ValueError(f"{path}: no <object> in this annotation; every image needs at least one")
    return {"filename": filename or path.stem + ".jpg", "objects": objects}


def image_target(
    objects: Sequence[VOCObject], classes: Sequence[str] = VOC_CLASSES
) -> tuple[torch.Tensor, torch.Tensor]:
    """(present, difficult_only): two 0/1 rows of length ``len(classes)``.

    ``present`` is 1 for a class with at least one non-difficult instance;
    ``difficult_only`` is 1 for a class whose every instance in the image is difficult.
    Truncated objects count like any other: truncation says the object is cut off by the
    image border, not that it is hard to see.
    """
    index = {c: i for i, c in enumerate(classes)}
    present = torch.zeros(len(classes))
    any_instance = torch.zeros(len(classes))
    for obj in objects:
        any_instance[index[obj.name]] = 1
        if not obj.difficult:
            present[index[obj.name]] = 1
    return present, any_instance - present


def _read_split(root: str | Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<split>.txt`` (blank lines skipped)."""
    path = Path(root) / "ImageSets" / "Main" / f"{split}.txt"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such split file; VOC 2007 has trainval.txt and test.txt"
        )
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path}: the split lists no images")
    return ids


# --- The data set -------------------------------------------------------------------------


class VOCMultiLabel(Dataset):
    """(image, multi-hot target) pairs for one split of a VOC-layout folder.

    All annotations are parsed and all image files checked when the data set is built, so a
    bad file fails in seconds, not mid-epoch. ``targets`` holds the training targets:
    a class whose only instances are difficult counts as present with
    ``difficult="positive"`` (as ML-GCN's training code does) or absent with
    ``"negative"``. ``present`` and ``ignore`` (difficult-only) are kept for evaluation.

    Images are read with :func:`helpers.folder.load_image` (greyscale, CMYK, 16-bit and
    transparent files are converted to RGB the same way every time, and a decompression
    bomb is refused naming the file); without a `transform` they come out as float
    (3, H, W) in [0, 1] (:func:`helpers.folder.image_to_tensor`). With one, `transform`
    gets the PIL image.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: Sequence[str] = VOC_CLASSES,
        transform=None,
        difficult: str = "positive",
    ):
        if difficult not in DIFFICULT_POLICIES:
            raise ValueError(f"difficult must be one of {DIFFICULT_POLICIES}, not {difficult!r}")
        self.root, self.split, self.classes = Path(root), split, list(classes)
        self.transform = transform
        self.ids = _read_split(self.root, split)
        rows, present, ignore, files = [], [], [], []
        for image_id in self.ids:
            xml = self.root / "Annotations" / f"{image_id}.xml"
            if not xml.exists():
                raise FileNotFoundError(
                    f"{xml}: annotation of {image_id!r} (listed in {split}.txt)"
                )
            ann = parse_annotation(xml, self.classes)
            image = self.root / "JPEGImages" / ann["filename"]
            if not image.is_file():
                raise FileNotFoundError(f"{image}: image named in {xml} does not exist")
            p, d = image_target(ann["objects"], self.classes)
            present.append(p)
            ignore.append(d)
            files.append(image)
            rows.append(ann["objects"])
        self.files, self.objects = files, rows
        self.present = torch.stack(present)
        self.ignore = torch.stack(ignore).bool()
        self.targets = (
            self.present + self.ignore.float() if difficult == "positive" else self.present
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        image = load_image(self.files[i], "RGB")
        if self.transform is not None:
            return self.transform(image), self.targets[i]
        return image_to_tensor(image), self.targets[i]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.split}: {len(self)} images, {len(self.classes)} classes, "
            f"{int(self.ignore.sum())} difficult-only labels)"
        )
