"""Corrupting clean multi-hot targets the way real annotation does, for chapter 11.

Real multi-label annotation is partial and sometimes wrong: an annotator tags the objects
they notice and misses others (a missed positive looks exactly like a negative), some
entries were never looked at (Open Images ships labels verified present, verified absent,
and the rest unknown), a web image carries a single tag, and some tags are simply wrong.
Each function here takes clean 0/1 targets and returns the targets a practitioner would
*observe*, with a seed, so the damage is controlled and repeatable and the clean targets
stay available to measure against.

Encoding of observed targets: 1 = labelled present, 0 = labelled absent, NaN = unknown
(never looked at). ``torch.nan`` is used because a loss can test for it with
``torch.isnan`` and because any metric that forgets about it fails loudly instead of
counting it as a negative.
"""

from __future__ import annotations

import pandas as pd
import torch

from helpers.labels import check_targets

__all__ = [
    "check_observed",
    "corruption_summary",
    "fill_unknown",
    "flip_labels",
    "hide_positives",
    "mask_unknown",
    "single_positive",
]

_UNKNOWN = float("nan")


def _check_2d(targets, kind: str) -> torch.Tensor:
    targets = torch.as_tensor(targets)
    if targets.ndim != 2:
        raise ValueError(
            f"{kind} targets must be (n_images, n_labels), got shape {tuple(targets.shape)}"
        )
    return targets


def _check_clean(targets: torch.Tensor) -> torch.Tensor:
    """Clean targets as a float (n_images, n_labels) tensor of 0s and 1s, or the error of
    :func:`helpers.labels.check_targets` (the one owner of the rule) naming the entry."""
    return check_targets(_check_2d(targets, "clean"), name="clean targets").float()


def check_observed(targets: torch.Tensor) -> torch.Tensor:
    """Observed targets as float: each entry 0, 1 or NaN (unknown); anything else is refused
    (:func:`helpers.labels.check_targets` with ``unknown=True``)."""
    return check_targets(_check_2d(targets, "observed"), name="observed targets", unknown=True)


def _check_rate(name: str, rate: float) -> float:
    if not 0 <= rate <= 1:  # also refuses NaN
        raise ValueError(f"{name} must be between 0 and 1, got {rate}")
    return float(rate)


def _uniform(shape: torch.Size, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def hide_positives(targets: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """Each positive becomes 0 with probability `rate`: the label an annotator missed.

    A hidden positive is indistinguishable from a true negative in the result, which is what
    makes missing labels hard: nothing marks them.
    """
    targets, rate = _check_clean(targets), _check_rate("rate", rate)
    hidden = (targets == 1) & (_uniform(targets.shape, seed) < rate)
    return torch.where(hidden, 0.0, targets)


def flip_labels(targets: torch.Tensor, pos_rate: float, neg_rate: float, seed: int) -> torch.Tensor:
    """Each positive becomes 0 with probability `pos_rate`, each negative 1 with `neg_rate`.

    ``flip_labels(t, r, 0, seed)`` equals ``hide_positives(t, r, seed)``: both draw one
    uniform number per entry from the same seed.
    """
    targets = _check_clean(targets)
    pos_rate, neg_rate = _check_rate("pos_rate", pos_rate), _check_rate("neg_rate", neg_rate)
    u = _uniform(targets.shape, seed)
    flip = torch.where(targets == 1, u < pos_rate, u < neg_rate)
    return torch.where(flip, 1 - targets, targets)


def mask_unknown(targets: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """Each entry becomes NaN (unknown) with probability `rate`; the known ones stay correct.

    This is the partial-label setting of Durand et al. (CVPR 2019): the labels that were
    annotated are right, and the data set says which ones were not annotated.
    """
    targets, rate = _check_clean(targets), _check_rate("rate", rate)
    return torch.where(_uniform(targets.shape, seed) < rate, _UNKNOWN, targets)


def single_positive(targets: torch.Tensor, seed: int) -> torch.Tensor:
    """Keep one positive per image, chosen uniformly at random; every other entry is unknown.

    The single-positive setting of Cole et al. (CVPR 2021), as their
    ``preproc/generate_observed_labels.py`` makes it (one positive, no negatives observed).
    An image without any positive keeps no label at all: the whole row is unknown.
    """
    targets = _check_clean(targets)
    # a random score per positive entry; the highest positive of each row is kept
    scores = torch.where(targets == 1, _uniform(targets.shape, seed), -1.0)
    keep = torch.zeros_like(targets, dtype=torch.bool)
    rows = torch.arange(len(targets))
    keep[rows, scores.argmax(1)] = True
    keep &= targets == 1
    return torch.where(keep, 1.0, _UNKNOWN)


def fill_unknown(targets: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Unknown (NaN) entries replaced by `value`: 0 is the "assume negative" reading."""
    targets = check_observed(targets)
    return torch.where(torch.isnan(targets), value, targets)


def corruption_summary(clean: torch.Tensor, observed: torch.Tensor) -> pd.Series:
    """What a corruption did, counted against the clean targets.

    ``positives kept`` are clean positives observed as 1; ``positives hidden`` clean positives
    observed as 0 (they look like negatives); ``false positives`` clean negatives observed as
    1; ``unknown`` entries observed as NaN. The ``share`` rows divide by the clean positives
    (for the first two), the clean negatives, or all entries.
    """
    clean, observed = _check_clean(clean), check_observed(observed)
    if clean.shape != observed.shape:
        raise ValueError(
            f"clean {tuple(clean.shape)} and observed {tuple(observed.shape)} differ in shape"
        )
    pos, neg = clean == 1, clean == 0
    counts = {
        "positives kept": int((pos & (observed == 1)).sum()),
        "positives hidden": int((pos & (observed == 0)).sum()),
        "false positives": int((neg & (observed == 1)).sum()),
        "unknown": int(torch.isnan(observed).sum()),
    }
    n_pos, n_neg = max(int(pos.sum()), 1), max(int(neg.sum()), 1)
    shares = {
        "share of positives kept": counts["positives kept"] / n_pos,
        "share of positives hidden": counts["positives hidden"] / n_pos,
        "share of negatives flipped to 1": counts["false positives"] / n_neg,
        "share of entries unknown": counts["unknown"] / clean.numel(),
    }
    return pd.Series({**counts, **shares}, dtype=object, name="observed vs clean")
