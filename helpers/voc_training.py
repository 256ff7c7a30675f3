"""Training and evaluating on PASCAL VOC 2007: transforms, presets, splits, loaders, and
the difficult-aware evaluation of the published tables.

A preset (:class:`VOCPreset`) holds what differs between a GPU run and a CPU run of the same
recipe. Evaluation leaves out the difficult-only (image, class) entries, as ML-GCN and CSRA
do; decisions come from :func:`helpers.labels.apply_thresholds` and the counts from
:func:`helpers.metrics.precision_recall_f1`, as in every report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from helpers.labels import apply_thresholds, check_scores, check_targets, per_label_thresholds
from helpers.metrics import average_precisions, precision_recall_f1
from helpers.voc import VOC_CLASSES, VOCMultiLabel

__all__ = [
    "CPU_PRESET",
    "GPU_PRESET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VOCPreset",
    "false_positive_table",
    "make_loader",
    "prepare_splits",
    "train_config",
    "voc_average_precision",
    "voc_label_report",
    "voc_transform",
]


# --- Transforms and training presets ------------------------------------------------------


IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


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


# --- Evaluation ---------------------------------------------------------------------------


def _check_voc(probs, present, ignore, classes=None, probabilities: bool = False):
    """Scores, 0/1 present and 0/1 ignore of the same shape; every class keeps an entry.

    Errors name the class when `classes` is given (else its column)."""
    names = list(classes) if classes is not None else None
    x = check_scores(probs, "probs", probabilities, names)
    if names is not None and len(names) != x.shape[1]:
        raise ValueError(f"{len(names)} classes but the scores have {x.shape[1]} columns")
    y = check_targets(present, x.shape, "present", vocab=names)
    ign = check_targets(ignore, x.shape, "ignore", vocab=names).bool()
    names = names or [f"label {j}" for j in range(x.shape[1])]
    both = ign & y.bool()
    if both.any():
        i, j = (int(v) for v in torch.nonzero(both)[0])
        raise ValueError(
            f"image {i}, {names[j]!r} is both present and ignored: ignore marks "
            "difficult-only classes, which are not present"
        )
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
    x, y, ign, names = _check_voc(probs, present, ignore, classes)
    ap = [  # each class is scored on its own kept entries; a warning names the class
        average_precisions(
            x[~ign[:, j], j : j + 1],
            y[~ign[:, j], j : j + 1],
            vocab=[names[j] if classes is not None else str(j)],
        )[0]
        for j in range(x.shape[1])
    ]
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
