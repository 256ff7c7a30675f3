"""PASCAL VOC 2007 as a multi-label data set: download, parse, load, evaluate.

VOC ships object annotations (one XML file per image, one ``<object>`` per instance), not
image labels. An image's multi-label target is the set of classes with at least one
instance. Instances flagged ``<difficult>1</difficult>`` are objects the annotators judged
hard to recognise; the published multi-label tables (ML-GCN, CSRA) *ignore* a class in
evaluation for an image whose only instances of it are difficult, and ML-GCN's training
code counts such a class as present. Both choices are made explicit here.

Every loader accepts any folder in VOC layout (``Annotations/*.xml``, ``JPEGImages/*.jpg``,
``ImageSets/Main/<split>.txt``), so the same code runs on the real data and on test data.
Bad input fails with the file named.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from helpers.env import reachable, shown_path
from helpers.folder import image_to_tensor, load_image
from helpers.labels import apply_thresholds, check_scores, check_targets, per_label_thresholds
from helpers.metrics import average_precisions, precision_recall_f1

__all__ = [
    "CPU_PRESET",
    "DIFFICULT_POLICIES",
    "GPU_PRESET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VOC2007_TEST_MD5",
    "VOC2007_TEST_TAR",
    "VOC2007_TRAINVAL_MD5",
    "VOC2007_TRAINVAL_TAR",
    "VOC2007_URL",
    "VOCMultiLabel",
    "VOCObject",
    "VOCPreset",
    "VOCUnavailableError",
    "VOC_CLASSES",
    "annotation_xml",
    "download_voc2007",
    "false_positive_table",
    "find_voc",
    "image_target",
    "make_loader",
    "parse_annotation",
    "prepare_splits",
    "timed_download",
    "train_config",
    "voc_archives",
    "voc_average_precision",
    "voc_label_report",
    "voc_transform",
    "write_split",
    "write_voc_image",
]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
DIFFICULT_POLICIES = ("positive", "negative")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VOCUnavailableError(RuntimeError):
    """VOC 2007 is neither on disk nor downloadable from here."""


# --- Finding and downloading the data ------------------------------------------------------


# Where VOC 2007 is downloaded from, and the md5 checksums of the two archives: the same
# facts torchvision's VOC loader uses (its `DATASET_YEAR_DICT`, a private table), written
# here so a torchvision change cannot move them silently (tests/test_voc.py compares).
VOC2007_URL = "https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/"
VOC2007_TRAINVAL_TAR = "VOCtrainval_06-Nov-2007.tar"
VOC2007_TRAINVAL_MD5 = "c52e279531787c972589f7e41ab4ae64"
VOC2007_TEST_TAR = "VOCtest_06-Nov-2007.tar"
VOC2007_TEST_MD5 = "b6e924de25625d8de591ea690078ad9f"


def voc_archives() -> dict[str, dict]:
    """URL, file name and md5 checksum of the two VOC 2007 archives (trainval, test)."""
    return {
        split: {"url": VOC2007_URL + name, "filename": name, "md5": md5}
        for split, name, md5 in [
            ("trainval", VOC2007_TRAINVAL_TAR, VOC2007_TRAINVAL_MD5),
            ("test", VOC2007_TEST_TAR, VOC2007_TEST_MD5),
        ]
    }


def find_voc(root: str | Path) -> Path | None:
    """The VOC-layout folder at `root` or at ``root/VOCdevkit/VOC2007``, else None.

    A folder counts when it has ``Annotations``, ``JPEGImages`` and ``ImageSets/Main``.
    """
    root = Path(root)
    for folder in (root, root / "VOCdevkit" / "VOC2007"):
        if all((folder / sub).is_dir() for sub in ("Annotations", "JPEGImages", "ImageSets/Main")):
            return folder
    return None


def download_voc2007(root: str | Path, timeout: float = 3.0, mirror: str | None = None) -> Path:
    """VOC 2007 trainval + test under ``root/VOCdevkit/VOC2007``: found, or downloaded.

    Downloads the two tar files (about 0.9 GB together) with torchvision's downloader and
    checks their md5 checksums (:func:`voc_archives`). `mirror` replaces the start of each
    URL up to the file name (the files must be the same: the checksum is checked all the
    same). Without a network this fails within `timeout` seconds and says what to fetch
    and where to put it.
    """
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    found = find_voc(root)
    if found is not None and (found / "ImageSets/Main/test.txt").exists():
        return found
    archives = voc_archives()
    urls = {
        split: (mirror.rstrip("/") + "/" + a["filename"]) if mirror else a["url"]
        for split, a in archives.items()
    }
    host = urlparse(urls["trainval"]).hostname
    reason = reachable(host, timeout)
    if reason is not None:
        files = "; ".join(f"{urls[s]} (md5 {archives[s]['md5']})" for s in ("trainval", "test"))
        raise VOCUnavailableError(
            f"VOC 2007 is not under {shown_path(root)} and {host} cannot be reached "
            f"({reason}). Download {files} on a machine with internet, extract both into "
            f"{shown_path(root)} (they unpack to VOCdevkit/VOC2007), then run this again. "
            "Any folder in VOC layout works (Annotations/*.xml, JPEGImages/*.jpg, "
            "ImageSets/Main/{trainval,test}.txt)."
        )
    for split, a in archives.items():
        download_and_extract_archive(urls[split], str(root), filename=a["filename"], md5=a["md5"])
    return root / "VOCdevkit" / "VOC2007"


# --- Annotations ---------------------------------------------------------------------------


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


# --- The data set --------------------------------------------------------------------------


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


def voc_transform(size: int, train: bool):
    """Resize the whole image to size x size (no crop: no object is cut off), flip if
    training, then scale to [0, 1] and normalise with ImageNet statistics.

    Resizing works on uint8 pixels (cheap, in the DataLoader workers); the float
    conversion comes last.
    """
    from torchvision.transforms import v2

    steps = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
    if train:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


# --- Training presets ----------------------------------------------------------------------


@dataclass(frozen=True)
class VOCPreset:
    """What differs between a GPU run and a CPU run of the same recipe."""

    name: str
    arch: str
    size: int
    batch_size: int
    epochs: int
    lr: float
    backbone_lr_ratio: float
    workers: int
    channels_last: bool = True  # faster on GPUs; on CPUs with bf16 autocast much slower
    pool: str = "avg"  # "max": global max pooling (ML-GCN: 93.0 vs 91.7 mAP, ResNet-101)
    ema_decay: float | None = None  # e.g. 0.99: validate an EMA of the weights (TrainConfig)
    max_train_images: int | None = None  # a subset, for CPU runs
    max_test_images: int | None = None


# GPU: settings after ML-GCN's ResNet-101 runs (448 px, global max pooling), with a
# ResNet-50. No GPU run was made for the book: neither its mAP nor its time is measured.
GPU_PRESET = VOCPreset(
    "gpu", "resnet50", size=448, batch_size=32, epochs=12, lr=1e-3, backbone_lr_ratio=0.1,
    workers=8, pool="max",
)  # fmt: skip
# CPU: a small subset at low resolution, sized for chapter 8's pipeline check on digits.
# Shows the pipeline, not VOC scores. One worker: on a 2-core machine it decodes while the
# main process trains.
CPU_PRESET = VOCPreset(
    "cpu", "resnet18", size=64, batch_size=32, epochs=2, lr=3e-3, backbone_lr_ratio=1.0,
    workers=1, channels_last=False, max_train_images=1000, max_test_images=500,
)  # fmt: skip


def train_config(preset: VOCPreset, **changes):
    """The ``helpers.train.TrainConfig`` of `preset`: AdamW + OneCycle, mixed precision
    (``amp_settings`` picks bf16 or fp16 + GradScaler), head at ``lr``, backbone slower."""
    from helpers.train import TrainConfig

    settings = {
        "epochs": preset.epochs,
        "lr": preset.lr,
        "amp": True,
        "channels_last": preset.channels_last,
        "head": "fc",
        "backbone_lr_ratio": preset.backbone_lr_ratio,
        "progress": False,
        "ema_decay": preset.ema_decay,
    }
    return TrainConfig(**{**settings, **changes})


def make_loader(
    dataset: Dataset, preset: VOCPreset, device: torch.device, train: bool, seed: int = 0
) -> DataLoader:
    """A DataLoader for `preset`: workers (capped by the CPU count), pinned memory on CUDA,
    a seeded generator for the training shuffle."""
    workers = min(preset.workers, os.cpu_count() or 1)
    return DataLoader(
        dataset,
        batch_size=preset.batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed) if train else None,
    )


# --- Evaluation ----------------------------------------------------------------------------


def _check_voc(probs, present, ignore, classes=None, probabilities: bool = False):
    """Scores, 0/1 present and 0/1 ignore of the same shape; every class keeps an entry."""
    x, y = check_scores(probs, "probs", probabilities), None
    y = check_targets(present, x.shape, "present")
    ign = check_targets(ignore, x.shape, "ignore").bool()
    if (ign & y.bool()).any():
        raise ValueError("an entry is both present and ignored: ignore marks difficult-only "
                         "classes, which are not present")  # fmt: skip
    names = list(classes) if classes is not None else [f"label {j}" for j in range(x.shape[1])]
    if len(names) != x.shape[1]:
        raise ValueError(f"{len(names)} classes but the scores have {x.shape[1]} columns")
    all_ignored = [names[j] for j in range(x.shape[1]) if ign[:, j].all()]
    if all_ignored:
        raise ValueError(
            f"every entry of {all_ignored[0]!r} is ignored (difficult-only): nothing is left to "
            "score it on"
        )
    return x, y, ign, names


def voc_average_precision(
    probs: torch.Tensor, present: torch.Tensor, ignore: torch.Tensor, classes=None
) -> torch.Tensor:
    """Per-class AP with difficult-only entries left out, as ML-GCN and CSRA evaluate.

    An ignored (image, class) entry is neither a positive nor a negative: it is dropped
    from that class's ranking. Computed with scikit-learn's ``average_precision_score`` on
    the kept entries (non-interpolated), through :func:`helpers.metrics.average_precisions`:
    a class with no positive left counts 0 with a warning; a class whose every entry is
    ignored is refused, naming it (`classes` gives the names). Returned as float64.
    """
    x, y, ign, _ = _check_voc(probs, present, ignore, classes)
    ap = [average_precisions(x[~ign[:, j], j : j + 1], y[~ign[:, j], j : j + 1])[0]
          for j in range(x.shape[1])]  # fmt: skip
    return torch.tensor(ap, dtype=torch.float64)


def voc_label_report(
    probs: torch.Tensor,
    present: torch.Tensor,
    ignore: torch.Tensor,
    classes: Sequence[str],
    thresholds=0.5,
) -> pd.DataFrame:
    """Per class: support, AP, threshold, precision, recall and F1, ignored entries left out.

    Decisions are :func:`helpers.labels.apply_thresholds` (``>=``), as in every report.
    A last row ``mean`` averages the classes (its AP is the mAP).
    """
    x, y, ign, names = _check_voc(probs, present, ignore, classes, probabilities=True)
    t = per_label_thresholds(thresholds, x.shape[1], x.dtype)
    pred = apply_thresholds(x, t)
    rows = []
    for j in range(len(names)):
        keep = ~ign[:, j]
        prf = precision_recall_f1(y[keep, j : j + 1], pred[keep, j : j + 1])
        rows.append(
            (
                int(y[keep, j].sum()),
                float(t[j]),
                float(prf["precision"][0]),
                float(prf["recall"][0]),
                float(prf["F1"][0]),
            )
        )
    table = pd.DataFrame(
        rows, columns=["support", "threshold", "precision", "recall", "F1"], index=names
    )
    table.insert(1, "AP", voc_average_precision(x, y, ign, names).numpy())
    table.index.name = "class"
    mean = table.drop(columns="support").mean().to_frame("mean").T
    mean.insert(0, "support", int(table["support"].sum()))
    return pd.concat([table, mean])


def false_positive_table(
    probs: torch.Tensor,
    present: torch.Tensor,
    ignore: torch.Tensor,
    classes: Sequence[str],
    thresholds=0.5,
    top: int = 5,
) -> pd.DataFrame:
    """The classes predicted most often where they are absent, and what *was* in those images.

    For each false positive of class c, count the true classes of the image: a row
    "chair <- diningtable" says many false chairs were in images with a dining table, a
    co-occurrence the model learned rather than an object it saw.
    """
    x, y, ign, _ = _check_voc(probs, present, ignore, classes, probabilities=True)
    y = y.bool()
    fp = apply_thresholds(x, thresholds).bool() & ~y & ~ign
    rows = []
    for j in torch.argsort(fp.sum(0), descending=True, stable=True)[:top].tolist():
        n = int(fp[:, j].sum())
        if n == 0:
            break
        with_fp = y[fp[:, j]].float().sum(0)
        k = int(with_fp.argmax())
        rows.append(
            {
                "false positive": classes[j],
                "count": n,
                "most common true class in those images": classes[k] if with_fp[k] > 0 else "-",
                "share of them": float(with_fp[k] / n),
            }
        )
    columns = ["false positive", "count", "most common true class in those images", "share of them"]
    return pd.DataFrame(rows, columns=columns)  # no false positive: an empty table, same columns


# --- Writing data in VOC layout (tests, and the chapter's pipeline check) --------------------


def annotation_xml(filename: str, width: int, height: int, objects: Sequence[dict]) -> str:
    """A VOC annotation as text. Each object: name, optional difficult/truncated (0/1) and
    bbox (xmin, ymin, xmax, ymax; default: the whole image)."""
    parts = [
        "<annotation>",
        "  <folder>VOC2007</folder>",
        f"  <filename>{filename}</filename>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for obj in objects:
        x0, y0, x1, y1 = obj.get("bbox", (1, 1, width, height))
        parts += [
            "  <object>",
            f"    <name>{obj['name']}</name>",
            f"    <truncated>{int(obj.get('truncated', 0))}</truncated>",
            f"    <difficult>{int(obj.get('difficult', 0))}</difficult>",
            f"    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_voc_image(
    root: str | Path, image_id: str, pixels: np.ndarray, objects: Sequence[dict]
) -> None:
    """Save one image as ``JPEGImages/<id>.jpg`` and its annotation as ``Annotations/<id>.xml``.

    `pixels` is uint8 (H, W) greyscale or (H, W, 3) RGB.
    """
    from PIL import Image

    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
    h, w = pixels.shape[:2]
    xml = annotation_xml(f"{image_id}.jpg", w, h, objects)
    (root / "Annotations" / f"{image_id}.xml").write_text(xml)


def write_split(root: str | Path, split: str, ids: Sequence[str]) -> None:
    folder = Path(root) / "ImageSets" / "Main"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


def timed_download(root: str | Path, timeout: float = 3.0) -> tuple[Path | None, str, float]:
    """Try :func:`download_voc2007`; return (folder or None, message, seconds taken)."""
    start = time.perf_counter()
    try:
        folder = download_voc2007(root, timeout)
        message = f"VOC 2007 ready in {shown_path(folder)}"
    except VOCUnavailableError as err:
        folder, message = None, str(err)
    return folder, message, time.perf_counter() - start


def prepare_splits(
    root: str | Path,
    preset: VOCPreset,
    classes: Sequence[str] = VOC_CLASSES,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """Train / validation / test data sets for `preset` from a VOC-layout folder.

    The validation split is carved out of trainval by iterative stratification
    (:func:`helpers.splits.stratified_split`), so every class keeps its share; the official
    test split is touched only for the final report. Training images get the flip, the
    others do not. ``preset.max_*_images`` keep the first images of each split (CPU runs).
    Returns ``{"train", "val", "test"}`` (data sets), and ``"trainval_all"`` and
    ``"test_all"``: the parsed splits, for label statistics and evaluation targets.
    """
    from torch.utils.data import Subset

    from helpers.splits import stratified_split

    train_tf, eval_tf = voc_transform(preset.size, True), voc_transform(preset.size, False)
    trainval = VOCMultiLabel(root, "trainval", classes, transform=train_tf)
    trainval_eval = VOCMultiLabel(root, "trainval", classes, transform=eval_tf)
    test = VOCMultiLabel(root, "test", classes, transform=eval_tf)
    n = min(len(trainval), preset.max_train_images or len(trainval))
    parts = stratified_split(
        trainval.targets[:n], {"train": 1 - val_fraction, "val": val_fraction}, seed=seed
    )
    n_test = min(len(test), preset.max_test_images or len(test))
    return {
        "train": Subset(trainval, parts["train"].tolist()),
        "val": Subset(trainval_eval, parts["val"].tolist()),
        "test": Subset(test, list(range(n_test))),
        "trainval_all": trainval,
        "test_all": test,
    }
