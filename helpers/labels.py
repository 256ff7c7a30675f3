"""Label vocabularies, multi-hot encoding, label statistics, and the rules every helper
shares about scores, targets and thresholds.

A multi-label target is a set of names per image. Models want a fixed-length 0/1 vector
(a *multi-hot* vector), so this module converts between the two and measures what a set of
targets looks like (how often each label occurs, how many labels an image has, which labels
appear together).

It is also the one owner of three rules, so that every module refuses the same inputs with
the same words and decides the same way: what scores may be (:func:`check_scores`), what
targets may be (:func:`check_targets`: 0/1, or soft, or with unknowns, as the caller says),
and how a probability becomes a decision (:func:`apply_thresholds`, ``>=``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

__all__ = [
    "LabelSets",
    "apply_thresholds",
    "build_vocab",
    "check_scores",
    "check_scores_and_targets",
    "check_targets",
    "cooccurrence",
    "decode",
    "label_cardinality",
    "label_density",
    "label_frequency",
    "label_summary",
    "multi_hot",
    "per_label_thresholds",
    "target_matrix",
]

LabelSets = Iterable[Iterable[str]]


def build_vocab(label_sets: LabelSets) -> list[str]:
    """Sorted list of every label seen: sorting makes the column order reproducible."""
    vocab = sorted({str(name) for labels in label_sets for name in labels})
    if not vocab:
        raise ValueError("no labels found: every label set is empty")
    return vocab


def multi_hot(label_sets: LabelSets, vocab: Sequence[str]) -> torch.Tensor:
    """Encode label sets as a float tensor of shape (n_samples, len(vocab)).

    An empty set is a legitimate target (an image with none of the labels) and encodes
    to a row of zeros. A name that is not in `vocab` is an error, not silently dropped:
    a typo in a label file would otherwise vanish from training.
    """
    index = {name: i for i, name in enumerate(vocab)}
    if len(index) != len(vocab):
        twice = sorted({str(n) for n in vocab if list(vocab).count(n) > 1})
        raise ValueError(f"vocab contains duplicate names: {twice}")
    label_sets = list(label_sets)
    out = torch.zeros(len(label_sets), len(vocab))
    for row, labels in enumerate(label_sets):
        if isinstance(labels, str):
            raise TypeError(
                f"sample {row}: got the string {labels!r}; pass a collection of names, "
                f"e.g. [{labels!r}] or {labels!r}.split()"
            )
        for name in labels:
            if name not in index:
                raise KeyError(f"sample {row}: unknown label {name!r}; vocabulary is {list(vocab)}")
            out[row, index[name]] = 1.0
    return out


def _where(first: tuple[int, ...], vocab: Sequence[str] | None) -> str:
    """Where an entry is: 'image i, label j' (the label by its name when a vocabulary is
    known); a 1-D input is one image's labels with `vocab`, else just 'index i'."""
    if len(first) == 1 and vocab is None:
        return f"index {first[0]}"
    j = first[-1]
    label = (
        f"label {vocab[j]!r} (column {j})" if vocab is not None and j < len(vocab) else f"label {j}"
    )
    return f"image {first[0]}, {label}" if len(first) == 2 else label


def check_scores(
    scores,
    name: str = "scores",
    probabilities: bool = True,
    vocab: Sequence[str] | None = None,
) -> torch.Tensor:
    """`scores` as a 2-D floating tensor (images, labels), or a clear error saying why not.

    The one owner of this rule: every helper that scores, calibrates or thresholds
    predictions (``metrics``, ``calibration``, ``predict``, ``voc_training``, and through
    :func:`apply_thresholds` the widgets and plots) calls it, so they all refuse the same
    inputs with the same words:

    - not 2-D: a flat vector could be one image or one label; say which with
      ``x.reshape(1, -1)`` (one image) or ``x.reshape(-1, 1)`` (one label);
    - no images or no labels;
    - NaN or infinite values (a diverged model): the error counts them and names the first;
    - with ``probabilities=True``, values outside [0, 1]: logits or scores that are not
      probabilities. A library that guesses (torchmetrics applies a sigmoid when any value is
      outside [0, 1]) would silently score something else. ``probabilities=False`` is for
      logits and other scores that are only ranked.

    Numpy arrays, lists and tensors (on any device) are accepted. With `vocab`, an error
    names the label. float32 and float64 keep their dtype (a cast to float32 can merge
    distinct float64 scores into ties); integers and booleans become float64 (exact),
    float16/bfloat16 float32.
    """
    if not isinstance(scores, torch.Tensor):  # Python floats are float64: keep them so
        scores = np.asarray(scores)
    x = torch.as_tensor(scores).detach().cpu()
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (images, labels), got shape {tuple(x.shape)}; for one image "
            "use x.reshape(1, -1), for one label x.reshape(-1, 1)"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} are empty (shape {tuple(x.shape)}): nothing to score")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    elif x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    _refuse_any(~torch.isfinite(x), x, f"{name} are NaN or infinite", vocab,
                "a diverged model or a broken input cannot be scored")  # fmt: skip
    if probabilities:
        _refuse_any((x < 0) | (x > 1), x, f"{name} are outside [0, 1]", vocab,
                    f"min {x.min().item():.4g}, max {x.max().item():.4g}: pass "
                    "torch.sigmoid(logits), not logits")  # fmt: skip
    return x


def _refuse_any(bad: torch.Tensor, x: torch.Tensor, what: str, vocab, advice: str) -> None:
    """Raise when any entry is `bad`: how many, and the first one by place and value, on
    lines that fit the page (79 characters, "ValueError: " included)."""
    if bad.any():
        first = tuple(int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} of {x.numel()} {what};\n"
            f"first at {_where(first, vocab)}: {x[first].item():.6g}\n{advice}"
        )


def check_targets(
    targets,
    shape=None,
    name: str = "targets",
    *,
    soft: bool = False,
    unknown: bool = False,
    vocab: Sequence[str] | None = None,
) -> torch.Tensor:
    """Targets as a CPU tensor: 0/1 as long, or a clear error saying what was found.

    By default only 0 and 1 (int, bool or float 0.0/1.0) are accepted: soft or smoothed
    targets (0.7, 0.9), NaN, 2 or -1 have no "right" or "wrong" to count. Two options widen
    that for the callers that need it, and then the result is float:
    ``soft=True`` accepts any value in [0, 1] (a loss that takes soft targets);
    ``unknown=True`` accepts NaN, meaning "never looked at" (chapter 11's observed labels).
    The error names how many values are refused, the first one and where it is (the label by
    its name with `vocab`). `shape`, when given, is the scores' shape: targets must match it
    exactly (nothing is trimmed or broadcast). Numpy arrays, lists and tensors are accepted.
    """
    y = torch.as_tensor(targets).detach().cpu()
    if shape is not None and tuple(y.shape) != tuple(shape):
        raise ValueError(
            f"{name} have shape {tuple(y.shape)} but the scores {tuple(shape)}: both need one "
            "row per image and one column per label"
        )
    if y.dtype == torch.bool:
        return y.float() if soft or unknown else y.long()
    ok = (y >= 0) & (y <= 1) if soft else (y == 0) | (y == 1)  # NaN fails both
    if unknown:
        ok |= torch.isnan(y)
    bad = ~ok
    if bad.any():
        first = tuple(int(v) for v in torch.nonzero(bad)[0])
        where = _where(first, vocab) if y.ndim in (1, 2) else f"index {first}"
        found = sorted({f"{float(v):.6g}" for v in y[bad].flatten()[:1000].tolist()})[:5]
        if soft:
            allowed = "in [0, 1] or NaN (unknown)" if unknown else "in [0, 1]"
        else:
            allowed = "0, 1 or NaN (unknown)" if unknown else "0 or 1 (multi-hot)"
        hint = "" if soft else "\nsoft targets have no right or wrong: threshold them first"
        raise ValueError(
            f"{name} must be {allowed};\n{int(bad.sum())} of {y.numel()} values are not, "
            f"first at {where}: {y[first].item():.6g} (found {', '.join(found)}){hint}"
        )
    return y.float() if soft or unknown else y.long()


def check_scores_and_targets(
    scores, targets, probabilities: bool = True, vocab: Sequence[str] | None = None
):
    """(scores, targets) checked together: :func:`check_scores`, then :func:`check_targets`
    with the scores' shape (errors name the label when `vocab` is given)."""
    x = check_scores(scores, probabilities=probabilities, vocab=vocab)
    return x, check_targets(targets, x.shape, vocab=vocab)


def per_label_thresholds(
    thresholds, n_labels: int, dtype=torch.float32, vocab: Sequence[str] | None = None
) -> torch.Tensor:
    """One threshold (a number) or one per label -> a tensor of `n_labels` thresholds.

    A threshold is a number in [0, 1], or ``inf`` (``float("inf")``): never predict this label
    (a probability of 1.0 is still below it, whereas a threshold of 1 predicts it). Refused,
    naming the label (its index, and its name when `vocab` is given) and the value: a wrong
    number of thresholds, more than one dimension, NaN (it never predicts, silently), ``-inf``
    and other values outside [0, 1] (1.2 silently predicts nothing: say ``inf``).
    `dtype` is the probabilities' dtype: the comparison happens in it.
    """
    if isinstance(thresholds, torch.Tensor):
        t = thresholds.detach().cpu()
    else:  # Python floats are float64: read them as such (1e-50 is not 0)
        t = torch.as_tensor(np.asarray(thresholds, dtype=np.float64))
    if t.ndim > 1 or (t.ndim == 1 and len(t) != n_labels):
        raise ValueError(
            f"thresholds must be one number or one per label ({n_labels}); "
            f"got shape {tuple(t.shape)}"
        )
    t = t.to(dtype)
    bad = ~(((t >= 0) & (t <= 1)) | (t == float("inf")))  # NaN fails all
    if bad.any():
        j = int(torch.nonzero(bad.reshape(-1))[0])
        label, count = "every label", ""
        if t.ndim == 1:
            label, count = f"label {j}", f" ({int(bad.sum())} bad of {t.numel()})"
        if vocab is not None and t.ndim == 1 and j < len(vocab):
            label += f" ({vocab[j]!r})"
        raise ValueError(
            f"thresholds must be in [0, 1], or inf for 'never predict'; {label} has "
            f"{t.reshape(-1)[j].item()!r}{count}"
        )
    return t.expand(n_labels).clone()


def apply_thresholds(probs, thresholds=0.5, vocab: Sequence[str] | None = None) -> torch.Tensor:
    """0/1 predictions: label j is predicted when ``probs[:, j] >= thresholds[j]``.

    The one place in ``helpers`` that turns probabilities into decisions: reports, tuning,
    calibration's precision promises, prediction, VOC reports, the plots, the widgets and
    :func:`decode` all call it. `thresholds` is one number for every label or one per label
    (:func:`per_label_thresholds`; ``inf`` never predicts its label; `vocab` names the label
    in a refusal); `probs` must be
    probabilities (:func:`check_scores`). The comparison is ``>=``, as in scikit-learn's
    precision-recall curve, so a threshold tuned to equal a score keeps that score
    (torchmetrics uses ``>``: the two differ only for a score exactly equal to the
    threshold). It is made in the dtype of `probs`: a threshold of 0.55 is compared as
    float32(0.55) with float32 probabilities.
    """
    probs = check_scores(probs, "probs", vocab=vocab)
    t = per_label_thresholds(thresholds, probs.shape[1], probs.dtype, vocab)
    return (probs >= t).long()


def decode(scores: torch.Tensor, vocab: Sequence[str], threshold=0.5) -> list[list[str]]:
    """Turn multi-hot rows or probabilities back into lists of names (scores >= threshold).

    A 1-D input is one image. Pass probabilities, not logits: a logit of 0.3 is a
    probability of 0.57, and values outside [0, 1] are refused (:func:`apply_thresholds`).
    `threshold` is one number or one per label; ``inf`` never decodes its label.
    """
    scores = torch.as_tensor(scores)
    if scores.ndim == 1:
        scores = scores.unsqueeze(0)
    if scores.ndim == 2 and scores.shape[1] != len(vocab):
        raise ValueError(f"scores have {scores.shape[1]} columns but vocab has {len(vocab)} names")
    pred = apply_thresholds(scores, threshold, vocab)
    return [[vocab[j] for j in torch.nonzero(row).flatten().tolist()] for row in pred]


def target_matrix(targets, vocab: Sequence[str] | None = None) -> torch.Tensor:
    """A 0/1 target matrix (images, labels) as float, checked: 2-D, at least one image,
    only 0 and 1 (:func:`check_targets`), and as many columns as `vocab` has names."""
    y = torch.as_tensor(targets)
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(
            f"targets must be (images, labels) with at least one image; got shape {tuple(y.shape)}"
        )
    if vocab is not None and y.shape[1] != len(vocab):
        raise ValueError(f"targets have {y.shape[1]} columns but vocab has {len(vocab)} names")
    return check_targets(y).float()


def label_frequency(targets: torch.Tensor, vocab: Sequence[str]) -> pd.DataFrame:
    """Per-label count and fraction of images carrying it, most frequent first."""
    targets = target_matrix(targets, vocab)
    count = targets.sum(0)
    return (
        pd.DataFrame(
            {
                "label": list(vocab),
                "count": count.long().tolist(),
                "fraction": (count / len(targets)).tolist(),
            }
        )
        .sort_values(["count", "label"], ascending=[False, True])
        .reset_index(drop=True)
    )


def label_cardinality(targets: torch.Tensor) -> float:
    """Mean number of labels per image."""
    return target_matrix(targets).sum(1).mean().item()


def label_density(targets: torch.Tensor) -> float:
    """Cardinality divided by the number of labels: the fraction of 1s in the target matrix."""
    targets = target_matrix(targets)
    return label_cardinality(targets) / targets.shape[1]


def cooccurrence(targets: torch.Tensor, vocab: Sequence[str]) -> pd.DataFrame:
    """Counts of images carrying both label i and label j; the diagonal is each label's count."""
    targets = target_matrix(targets, vocab)
    counts = (targets.T @ targets).long()
    return pd.DataFrame(counts.numpy(), index=list(vocab), columns=list(vocab))


def label_summary(targets: torch.Tensor) -> pd.Series:
    """The handful of numbers that describe a multi-label target matrix."""
    targets = target_matrix(targets)
    per_image = targets.sum(1)
    return pd.Series(
        {
            "images": len(targets),
            "labels": targets.shape[1],
            "cardinality": label_cardinality(targets),
            "density": label_density(targets),
            "images with no label": int((per_image == 0).sum()),
            "distinct label sets": len({tuple(row) for row in targets.long().tolist()}),
        },
        dtype=object,  # counts stay integers next to the ratios
    )
