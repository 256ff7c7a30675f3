"""Multi-label metrics, computed with torchmetrics and scikit-learn so the numbers match
well-tested libraries. The one function written by hand, :func:`average_precision_by_hand`,
is there to be read, and its tests check it against both libraries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import (
    accuracy_score,
    coverage_error,
    f1_score,
    hamming_loss,
    label_ranking_average_precision_score,
    label_ranking_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
)
from torchmetrics.functional.classification import (
    multilabel_average_precision,
    multilabel_f1_score,
    multilabel_precision,
    multilabel_recall,
)


def per_label_report(
    probs: torch.Tensor, targets: torch.Tensor, vocab: Sequence[str], threshold: float = 0.5
) -> pd.DataFrame:
    """One row per label: support, average precision, and precision/recall/F1 at `threshold`.

    Average precision ranks images by score and needs no threshold; precision, recall and
    F1 depend on the threshold that turns probabilities into yes/no decisions.
    A last row ``macro`` averages the labels with equal weight (mAP is its AP).
    """
    probs, targets = torch.as_tensor(probs).float(), torch.as_tensor(targets).long()
    n = len(vocab)
    kw = {"num_labels": n, "average": None}
    thr = {"threshold": threshold}
    table = pd.DataFrame(
        {
            "support": targets.sum(0).tolist(),
            "AP": multilabel_average_precision(probs, targets, **kw).tolist(),
            "precision": multilabel_precision(probs, targets, **kw, **thr).tolist(),
            "recall": multilabel_recall(probs, targets, **kw, **thr).tolist(),
            "F1": multilabel_f1_score(probs, targets, **kw, **thr).tolist(),
        },
        index=pd.Index(list(vocab), name="label"),
    )
    macro = table.drop(columns="support").mean().to_frame("macro").T
    macro.insert(0, "support", int(targets.sum()))
    return pd.concat([table, macro])


def mean_average_precision(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Macro mAP: average precision of each label, averaged over labels."""
    targets = torch.as_tensor(targets).long()
    return multilabel_average_precision(
        torch.as_tensor(probs).float(), targets, num_labels=targets.shape[1], average="macro"
    ).item()


@torch.inference_mode()
def predict_probs(
    model: torch.nn.Module, loader, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid probabilities and targets for a whole loader, gathered on the CPU.

    The model runs in eval mode (batch norm uses its running statistics, dropout is off) and
    is put back in the mode it came in: called between training epochs, it must not leave
    the rest of the epoch loop training a model in eval mode.
    """
    was_training = model.training
    model.eval()
    try:
        probs, targets = [], []
        for x, y in loader:
            probs.append(torch.sigmoid(model(x.to(device))).float().cpu())
            targets.append(y)
    finally:
        model.train(was_training)
    return torch.cat(probs), torch.cat(targets)


# --- Chapter 5: evaluating thresholded predictions, baselines and thresholds ------------------


def average_precision_by_hand(scores, labels) -> float:
    """Average precision of one label, written out to show what the library computes.

    Rank images by score; at every distinct score, precision is the fraction of positives
    among the images ranked so far; AP averages those precisions weighted by the recall each
    step adds. Tied scores form one step: a threshold cannot split a tie, so the positives
    and negatives of a tie count together (as in scikit-learn and torchmetrics).
    With no positives, recall divides by zero and AP is undefined; both libraries warn and
    return 0, so this function returns 0.0 as well (and macro mAP counts that 0).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if labels.sum() == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # end of each group of ties
    true_pos = np.cumsum(y)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall = true_pos / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def apply_thresholds(probs: torch.Tensor, thresholds=0.5) -> torch.Tensor:
    """0/1 predictions: label j is predicted when ``probs[:, j] >= thresholds[j]``.

    `thresholds` is one number for every label or one per label. The comparison is ``>=``,
    as in :func:`helpers.labels.decode` and scikit-learn's precision-recall curve, so a
    threshold tuned to equal a score keeps that score. (torchmetrics uses ``>``: the two
    differ only for a score exactly equal to the threshold.)
    """
    probs = torch.as_tensor(probs).float()
    t = torch.as_tensor(thresholds, dtype=probs.dtype)
    if t.ndim > 1 or (t.ndim == 1 and len(t) != probs.shape[1]):
        raise ValueError(
            f"thresholds must be one number or one per label ({probs.shape[1]}); "
            f"got shape {tuple(t.shape)}"
        )
    return (probs >= t).long()


def top_k_predictions(probs: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 predictions with exactly the `k` highest-scoring labels of each image switched on.

    No threshold at all: every image gets k labels, however many it really has.
    Ties at the k-th place are broken by ``torch.topk``.
    """
    probs = torch.as_tensor(probs).float()
    if not 1 <= k <= probs.shape[1]:
        raise ValueError(f"k must be between 1 and the number of labels, {probs.shape[1]}; got {k}")
    top = probs.topk(k, dim=1).indices
    return torch.zeros_like(probs, dtype=torch.long).scatter_(1, top, 1)


F1_AVERAGES = {"micro_f1": "micro", "macro_f1": "macro", "samples_f1": "samples"}


def tune_global_threshold(
    probs: torch.Tensor, targets: torch.Tensor, metric: str = "micro_f1", candidates=None
) -> tuple[float, float]:
    """The one threshold, shared by all labels, that maximises `metric`; and that best score.

    Candidates are a grid, 0.01 to 0.99 in steps of 0.01 unless given: a shared threshold
    only needs to be roughly right, and a grid is easy to read. Among equal scores the
    lowest threshold wins. Tune on validation data, never on the test split.
    """
    if metric not in F1_AVERAGES:
        raise ValueError(f"metric must be one of {sorted(F1_AVERAGES)}, got {metric!r}")
    if candidates is None:
        candidates = np.round(np.arange(1, 100) / 100, 2)
    y = torch.as_tensor(targets).long().numpy()
    scores = [
        f1_score(
            y,
            apply_thresholds(probs, float(t)).numpy(),
            average=F1_AVERAGES[metric],
            zero_division=0,
        )
        for t in candidates
    ]
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])


def tune_thresholds(
    probs: torch.Tensor, targets: torch.Tensor, fallback: float = 0.5
) -> torch.Tensor:
    """One threshold per label, each maximising that label's F1 (so, together, macro F1).

    The search is exact: the candidates are the label's unique scores (from scikit-learn's
    ``precision_recall_curve``), each the lowest score still predicted positive. Among
    equal F1 the lowest threshold wins. A label with no positives has no F1 to maximise and
    gets `fallback`.
    """
    probs = torch.as_tensor(probs).float()
    y = torch.as_tensor(targets).long()
    out = torch.full((probs.shape[1],), float(fallback))
    for j in range(probs.shape[1]):
        if y[:, j].sum() == 0:
            continue
        precision, recall, thresholds = precision_recall_curve(y[:, j].numpy(), probs[:, j].numpy())
        p, r = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        out[j] = float(thresholds[int(np.argmax(f1))])
    return out


def trivial_baselines(train_targets: torch.Tensor, n_images: int) -> dict[str, torch.Tensor]:
    """Scores of three models that look at no image, for `n_images` images.

    - ``predict nothing``: score 0 for every label;
    - ``label frequency``: every image gets the training frequency of each label as its
      score (at 0.5 it predicts the labels present in more than half the training images);
    - ``predict everything``: score 1 for every label.
    Any real model must beat all three; a metric on which they look good is a warning.
    """
    freq = torch.as_tensor(train_targets).float().mean(0)
    n_labels = len(freq)
    return {
        "predict nothing": torch.zeros(n_images, n_labels),
        "label frequency": freq.expand(n_images, n_labels).clone(),
        "predict everything": torch.ones(n_images, n_labels),
    }


def evaluate(
    probs: torch.Tensor,
    targets: torch.Tensor,
    thresholds=0.5,
    predictions: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Every common multi-label figure for one set of scores, as a tidy table.

    One row per (metric, average), one column ``value``. Ranking metrics (mAP, label
    ranking AP, coverage error, ranking loss) use the scores and need no threshold; the
    others use 0/1 `predictions`, by default ``apply_thresholds(probs, thresholds)`` (pass
    them to evaluate e.g. top-k). Averages: ``micro`` pools all image-label decisions,
    ``macro`` averages labels with equal weight, ``samples`` averages images. Precision of
    a label or image with no predicted positives counts as 0 (``zero_division=0``).
    An image with empty true and predicted sets scores 0 in samples P/R/F1
    (``zero_division=0``), although the prediction is right.
    Computed with scikit-learn, except mAP which uses :func:`mean_average_precision`.
    """
    probs = torch.as_tensor(probs).float()
    y = torch.as_tensor(targets).long()
    pred = apply_thresholds(probs, thresholds) if predictions is None else predictions
    y_np, p_np, s_np = y.numpy(), torch.as_tensor(pred).long().numpy(), probs.numpy()
    rows = {("mAP", "macro"): mean_average_precision(probs, y)}
    for name, fn in [("precision", precision_score), ("recall", recall_score), ("F1", f1_score)]:
        for average in ("micro", "macro", "samples"):
            rows[(name, average)] = fn(y_np, p_np, average=average, zero_division=0)
    hamming = hamming_loss(y_np, p_np)
    rows[("Hamming loss", "all elements")] = hamming
    rows[("per-element accuracy", "all elements")] = 1 - hamming
    rows[("subset accuracy", "samples")] = accuracy_score(y_np, p_np)  # exact match
    rows[("labels per image", "samples")] = p_np.sum(1).mean()
    rows[("label ranking AP", "samples")] = label_ranking_average_precision_score(y_np, s_np)
    rows[("coverage error", "samples")] = coverage_error(y_np, s_np)
    rows[("ranking loss", "samples")] = label_ranking_loss(y_np, s_np)
    index = pd.MultiIndex.from_tuples(list(rows), names=["metric", "average"])
    return pd.DataFrame({"value": [float(v) for v in rows.values()]}, index=index)


def paired_bootstrap_micro_f1(
    targets: torch.Tensor,
    pred_a: torch.Tensor,
    pred_b: torch.Tensor,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Micro F1 of `pred_a` minus that of `pred_b` on `n_resamples` bootstrap resamples.

    Both predictions are scored on the *same* resampled images (a paired bootstrap), so the
    spread reflects how much the difference depends on which test images we happened to
    draw. Micro F1 only needs each image's true/false positive and false negative counts,
    so each resample is a weighted sum: one matrix product for all resamples.
    """
    y = torch.as_tensor(targets).long().numpy().astype(bool)
    rng = np.random.default_rng(seed)
    n = len(y)
    drawn = rng.integers(0, n, (n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    weights = np.bincount(drawn.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)

    def micro_f1(pred) -> np.ndarray:
        p = torch.as_tensor(pred).long().numpy().astype(bool)
        counts = np.stack([(p & y).sum(1), (p & ~y).sum(1), (~p & y).sum(1)], axis=1)
        tp, fp, fn = (weights @ counts).T.astype(np.float64)
        denom = 2 * tp + fp + fn
        return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)

    return micro_f1(pred_a) - micro_f1(pred_b)


def threshold_report(
    probs: torch.Tensor, targets: torch.Tensor, vocab: Sequence[str], thresholds=0.5
) -> pd.DataFrame:
    """Per label: its threshold, support, predicted count, precision, recall and F1.

    Like :func:`per_label_report` but for any thresholds (one or one per label), and with
    ``micro`` and ``macro`` rows at the bottom. Precision with nothing predicted is 0.
    """
    probs = torch.as_tensor(probs).float()
    y = torch.as_tensor(targets).long().numpy()
    pred = apply_thresholds(probs, thresholds).numpy()
    t = torch.as_tensor(thresholds, dtype=torch.float32).expand(probs.shape[1])
    kw = {"zero_division": 0}
    table = pd.DataFrame(
        {
            "threshold": t.tolist(),
            "support": y.sum(0),
            "predicted": pred.sum(0),
            "precision": precision_score(y, pred, average=None, **kw),
            "recall": recall_score(y, pred, average=None, **kw),
            "F1": f1_score(y, pred, average=None, **kw),
        },
        index=pd.Index(list(vocab), name="label"),
    )
    for average in ("micro", "macro"):
        table.loc[average] = [
            np.nan,
            y.sum(),
            pred.sum(),
            precision_score(y, pred, average=average, **kw),
            recall_score(y, pred, average=average, **kw),
            f1_score(y, pred, average=average, **kw),
        ]
    return table.astype({"support": int, "predicted": int})
