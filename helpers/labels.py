"""Label vocabularies, multi-hot encoding and label statistics.

A multi-label target is a set of names per image. Models want a fixed-length 0/1 vector
(a *multi-hot* vector), so everything here converts between the two and measures what a
set of targets looks like (how often each label occurs, how many labels an image has,
which labels appear together).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import torch

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
        raise ValueError("vocab contains duplicate names")
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


def decode(scores: torch.Tensor, vocab: Sequence[str], threshold: float = 0.5) -> list[list[str]]:
    """Turn multi-hot rows or probabilities back into lists of names (scores >= threshold).

    Pass probabilities, not logits: a logit of 0.3 is a probability of 0.57.
    """
    scores = torch.as_tensor(scores)
    if scores.ndim == 1:
        scores = scores.unsqueeze(0)
    if scores.shape[1] != len(vocab):
        raise ValueError(f"scores have {scores.shape[1]} columns but vocab has {len(vocab)} names")
    return [
        [vocab[j] for j in torch.nonzero(row >= threshold).flatten().tolist()] for row in scores
    ]


def label_frequency(targets: torch.Tensor, vocab: Sequence[str]) -> pd.DataFrame:
    """Per-label count and fraction of images carrying it, most frequent first."""
    targets = torch.as_tensor(targets).float()
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
    return torch.as_tensor(targets).float().sum(1).mean().item()


def label_density(targets: torch.Tensor) -> float:
    """Cardinality divided by the number of labels: the fraction of 1s in the target matrix."""
    targets = torch.as_tensor(targets).float()
    return label_cardinality(targets) / targets.shape[1]


def cooccurrence(targets: torch.Tensor, vocab: Sequence[str]) -> pd.DataFrame:
    """Counts of images carrying both label i and label j; the diagonal is each label's count."""
    targets = torch.as_tensor(targets).float()
    counts = (targets.T @ targets).long()
    return pd.DataFrame(counts.numpy(), index=list(vocab), columns=list(vocab))


def label_summary(targets: torch.Tensor) -> pd.Series:
    """The handful of numbers that describe a multi-label target matrix."""
    targets = torch.as_tensor(targets).float()
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
