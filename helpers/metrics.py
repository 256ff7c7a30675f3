"""Multi-label metrics: AP and the ranking figures from scikit-learn, so the numbers match a
well-tested library, and precision, recall and F1 counted in one place,
:func:`precision_recall_f1`, which every report (and calibration, the VOC reports and the
plots) calls; its tests check it against scikit-learn and torchmetrics.
:func:`average_precision_by_hand` is written out to be read, and checked the same way.

Every function checks its input first (:mod:`helpers.labels`: ``check_scores``,
``check_targets``) and refuses what it cannot score: NaN or infinite scores, targets that
are not 0/1, shapes that do not match, probabilities outside [0, 1] where a threshold is
applied. Thresholds are applied in one place, :func:`helpers.labels.apply_thresholds`
(``>=``), and precision, recall and F1 are counted from those 0/1 decisions; no
probability is handed to a library that might guess it is a logit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    coverage_error,
    hamming_loss,
    label_ranking_average_precision_score,
    label_ranking_loss,
)

from helpers.labels import (
    apply_thresholds,
    check_scores,
    check_scores_and_targets,
    check_targets,
    per_label_thresholds,
)

__all__ = [
    "F1_AVERAGES",
    "average_precision_by_hand",
    "average_precisions",
    "evaluate",
    "f1_by_threshold",
    "mean_average_precision",
    "per_label_report",
    "precision_curve",
    "precision_recall_f1",
    "threshold_report",
    "top_k_predictions",
    "trivial_baselines",
    "tune_global_threshold",
    "tune_thresholds",
]

_NONFINITE = ("raise", "nan")


def _check_vocab(vocab: Sequence[str], n_labels: int) -> list[str]:
    vocab = list(vocab)
    if len(vocab) != n_labels:
        raise ValueError(f"vocab has {len(vocab)} names but the scores {n_labels} labels")
    return vocab


def average_precisions(
    scores, targets, nonfinite: str = "raise", vocab: Sequence[str] | None = None
) -> np.ndarray:
    """Average precision of each label (scikit-learn's ``average_precision_score``).

    Scores may be probabilities or logits (AP only ranks them), in their own dtype. A label
    with no positives has no AP; like scikit-learn and torchmetrics it counts as 0, with a
    warning naming the label (by its name when `vocab` is given). NaN or infinite scores
    raise (``nonfinite="raise"``) or give NaN for every label (``nonfinite="nan"``, for a
    training loop that records a diverged epoch instead of stopping on it).
    """
    if nonfinite not in _NONFINITE:
        raise ValueError(f"nonfinite must be one of {_NONFINITE}, not {nonfinite!r}")
    if nonfinite == "nan":
        x = torch.as_tensor(scores)
        if x.ndim == 2 and x.numel() and not torch.isfinite(x).all():
            check_targets(targets, x.shape, vocab=vocab)
            return np.full(x.shape[1], np.nan)
    x, y = check_scores_and_targets(scores, targets, probabilities=False, vocab=vocab)
    s, t = x.numpy(), y.numpy()
    names = _check_vocab(vocab, s.shape[1]) if vocab is not None else list(range(s.shape[1]))
    empty = [j for j in range(t.shape[1]) if t[:, j].sum() == 0]
    if empty:
        which = ", ".join(str(names[j]) for j in empty)
        warnings.warn(
            f"no positives for label(s) {which}: their AP is undefined and counts as 0",
            UserWarning,
            stacklevel=2,
        )
    return np.array(
        [0.0 if j in empty else average_precision_score(t[:, j], s[:, j]) for j in range(len(s.T))]
    )


def precision_recall_f1(targets, predictions, zero_division: float = 0.0) -> dict[str, np.ndarray]:
    """Per-label precision, recall and F1 of 0/1 `predictions`, counted directly: the one
    place in ``helpers`` that counts them (reports, VOC reports, calibration's promises and
    the plots' operating points call it).

    Also ``micro`` (pooled counts) values under the keys ``micro_precision`` etc., and
    ``samples`` ones (averaged over images). With nothing predicted (or nothing to find) a
    ratio is `zero_division`: 0 as scikit-learn's ``zero_division=0``, or ``np.nan`` where a
    label that is never predicted must not count as precision 0 (nor as 1). Counting here,
    rather than calling scikit-learn on the matrix, keeps a one-label input a one-label
    input (scikit-learn reads an (n, 1) matrix as a binary problem and averages over *two*
    classes).
    """
    y = check_targets(targets)
    if y.ndim != 2:
        raise ValueError(f"targets must be 2-D (images, labels), got shape {tuple(y.shape)}")
    p = check_targets(predictions, y.shape, "predictions")
    y, p = y.numpy().astype(bool), p.numpy().astype(bool)

    def ratios(tp, fp, fn):
        tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))

        def ratio(num, den):
            return np.divide(num, den, out=np.full_like(num, zero_division), where=den > 0)

        return ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn)

    tp, fp, fn = (p & y).sum(0), (p & ~y).sum(0), (~p & y).sum(0)
    out = dict(zip(("precision", "recall", "F1"), ratios(tp, fp, fn), strict=True))
    for name, v in zip(
        ("precision", "recall", "F1"), ratios(tp.sum(), fp.sum(), fn.sum()), strict=True
    ):
        out[f"micro_{name}"] = float(v)
    samples = ratios((p & y).sum(1), (p & ~y).sum(1), (~p & y).sum(1))
    for name, v in zip(("precision", "recall", "F1"), samples, strict=True):
        out[f"samples_{name}"] = float(v.mean())
    return out


def per_label_report(
    probs: torch.Tensor, targets: torch.Tensor, vocab: Sequence[str], threshold=0.5
) -> pd.DataFrame:
    """One row per label: support, average precision, and precision/recall/F1 at `threshold`.

    Average precision ranks images by score and needs no threshold; precision, recall and
    F1 depend on the threshold that turns probabilities into yes/no decisions
    (:func:`apply_thresholds`: ``>=``; one number or one per label).
    A last row ``macro`` averages the labels with equal weight (mAP is its AP).
    """
    probs, targets = check_scores_and_targets(probs, targets, vocab=vocab)
    vocab = _check_vocab(vocab, probs.shape[1])
    prf = precision_recall_f1(targets, apply_thresholds(probs, threshold))
    table = pd.DataFrame(
        {
            "support": targets.sum(0).tolist(),
            "AP": average_precisions(probs, targets, vocab=vocab),
            "precision": prf["precision"],
            "recall": prf["recall"],
            "F1": prf["F1"],
        },
        index=pd.Index(vocab, name="label"),
    )
    macro = table.drop(columns="support").mean().to_frame("macro").T
    macro.insert(0, "support", int(targets.sum()))
    return pd.concat([table, macro])


def mean_average_precision(
    probs: torch.Tensor,
    targets: torch.Tensor,
    nonfinite: str = "raise",
    vocab: Sequence[str] | None = None,
) -> float:
    """Macro mAP: average precision of each label, averaged over labels
    (:func:`average_precisions`; a label with no positives counts as 0, with a warning that
    names it by its name when `vocab` is given).

    NaN or infinite scores raise a ValueError; ``nonfinite="nan"`` returns NaN instead.
    """
    return float(np.mean(average_precisions(probs, targets, nonfinite, vocab)))


# --- Thresholded predictions: baselines, top k, tuned thresholds, reports --------------------


def average_precision_by_hand(scores, labels) -> float:
    """Average precision of one label, written out to show what the library computes.

    Rank images by score; at every distinct score, precision is the fraction of positives
    among the images ranked so far; AP averages those precisions weighted by the recall each
    step adds. Tied scores form one step: a threshold cannot split a tie, so the positives
    and negatives of a tie count together (as in scikit-learn and torchmetrics).
    With no positives, recall divides by zero and AP is undefined; both libraries warn and
    return 0, so this function returns 0.0 as well (and macro mAP counts that 0).
    Scores and labels are checked as everywhere else: one score per label, finite, 0/1 labels.
    """
    scores = torch.as_tensor(scores).flatten()
    labels = torch.as_tensor(labels).flatten()
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    scores = check_scores(scores.reshape(-1, 1), probabilities=False).numpy().ravel()
    labels = check_targets(labels, name="labels").numpy().astype(bool)
    if labels.sum() == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # end of each group of ties
    true_pos = np.cumsum(y)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall = true_pos / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def top_k_predictions(probs: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 predictions with exactly the `k` highest-scoring labels of each image switched on.

    No threshold at all: every image gets k labels, however many it really has.
    Ties at the k-th place are broken by ``torch.topk``. Any finite scores work (logits too).
    """
    probs = check_scores(probs, "probs", probabilities=False)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= probs.shape[1]:
        raise ValueError(f"k must be between 1 and the number of labels, {probs.shape[1]}; got {k}")
    top = probs.topk(int(k), dim=1).indices
    return torch.zeros_like(probs, dtype=torch.long).scatter_(1, top, 1)


F1_AVERAGES = {"micro_f1": "micro", "macro_f1": "macro", "samples_f1": "samples"}


def _f1(targets: torch.Tensor, pred: torch.Tensor, average: str) -> float:
    prf = precision_recall_f1(targets, pred)
    return float(prf["F1"].mean()) if average == "macro" else prf[f"{average}_F1"]


def f1_by_threshold(probs, targets, thresholds=None) -> pd.DataFrame:
    """Micro and macro F1 when one threshold is shared by all labels, for each threshold.

    The predictions come from :func:`apply_thresholds` (the book's ``>=`` rule) and F1 is
    scored exactly as :func:`tune_global_threshold` scores its candidates, so the validation
    curve peaks where that function's threshold lies. Default thresholds: 0.01 to 0.99 in
    steps of 0.01, the same grid. Chapter 5 draws it (``helpers.plots.plot_f1_vs_threshold``).
    """
    probs, y = check_scores_and_targets(probs, targets)
    if thresholds is None:
        thresholds = np.round(np.arange(1, 100) / 100, 2)
    rows = {}
    for t in thresholds:
        pred = apply_thresholds(probs, float(t))
        rows[float(t)] = {average: _f1(y, pred, average) for average in ("micro", "macro")}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("threshold")


def tune_global_threshold(
    probs: torch.Tensor, targets: torch.Tensor, metric: str = "micro_f1", candidates=None
) -> tuple[float, float]:
    """The one threshold, shared by all labels, that maximises `metric`; and that best score.

    Candidates are a grid, 0.01 to 0.99 in steps of 0.01 unless given: a shared threshold
    only needs to be roughly right, and a grid is easy to read. Among equal scores the
    lowest threshold wins, in whatever order the candidates are given. Tune on validation
    data, never on the test split.
    """
    if metric not in F1_AVERAGES:
        raise ValueError(f"metric must be one of {sorted(F1_AVERAGES)}, got {metric!r}")
    probs, y = check_scores_and_targets(probs, targets)
    if candidates is None:
        candidates = np.round(np.arange(1, 100) / 100, 2)
    candidates = np.asarray(candidates, dtype=np.float64).ravel()
    if len(candidates) == 0:
        raise ValueError("candidates is empty: there is no threshold to choose")
    per_label_thresholds(torch.from_numpy(candidates), len(candidates), torch.float64)  # [0, 1]
    candidates = np.unique(candidates)  # sorted: np.argmax then picks the lowest of equals
    scores = [_f1(y, apply_thresholds(probs, float(t)), F1_AVERAGES[metric]) for t in candidates]
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])


def precision_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct threshold of one label (descending) with its true positives and number
    predicted, predicting the label when its score is ``>=`` the threshold; ties enter
    together. Counts, not ratios: precision is ``tp / predicted``, F1 ``2 tp / (predicted +
    positives)``, so equal ratios compare equal (2/3 from 4/6 or from 6/9).
    """
    s = check_scores(torch.as_tensor(np.asarray(scores)).reshape(-1, 1), "scores")
    y = check_targets(torch.as_tensor(np.asarray(labels)).reshape(-1, 1), s.shape, "labels")
    s, y = s.numpy().ravel(), y.numpy().ravel()
    order = np.argsort(-s, kind="stable")
    s, yy = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    return s[last_of_tie], np.cumsum(yy)[last_of_tie], last_of_tie + 1


def tune_thresholds(
    probs: torch.Tensor, targets: torch.Tensor, fallback: float = 0.5
) -> torch.Tensor:
    """One threshold per label, each maximising that label's F1 (so, together, macro F1).

    The search is exact: the candidates are the label's unique scores
    (:func:`precision_curve`), each the lowest score still predicted positive, and F1 is
    computed from counts, ``2 tp / (predicted + positives)``, so equal F1 compare equal.
    Among equal F1 the lowest threshold wins. A label with no positives has no F1
    to maximise and gets `fallback`. The thresholds have the dtype of `probs`, so a tuned
    threshold equals its score exactly (a float64 score rounded to float32 could land above
    itself and stop predicting it).
    """
    probs, y = check_scores_and_targets(probs, targets)
    out = per_label_thresholds(fallback, probs.shape[1], probs.dtype)
    for j in range(probs.shape[1]):
        if y[:, j].sum() == 0:
            continue
        t, tp, predicted = precision_curve(probs[:, j], y[:, j])
        f1 = 2 * tp / (predicted + int(y[:, j].sum()))
        out[j] = float(t[np.flatnonzero(f1 == f1.max())[-1]])  # descending: last = lowest
    return out


def trivial_baselines(train_targets: torch.Tensor, n_images: int) -> dict[str, torch.Tensor]:
    """Scores of three models that look at no image, for `n_images` images.

    - ``predict nothing``: score 0 for every label;
    - ``label frequency``: every image gets the training frequency of each label as its
      score (at 0.5 it predicts the labels present in more than half the training images);
    - ``predict everything``: score 1 for every label.
    Any real model must beat all three; a metric on which they look good is a warning.
    """
    y = check_targets(train_targets)
    if y.ndim != 2 or len(y) == 0:
        raise ValueError(f"train_targets must be (images, labels), got shape {tuple(y.shape)}")
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    freq = y.float().mean(0)
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
    Precision, recall and F1 are counted by :func:`precision_recall_f1` (they equal
    scikit-learn's with ``zero_division=0``, which the tests check); mAP is
    :func:`mean_average_precision`; the other figures are scikit-learn's.
    Needs at least two labels: with one, per-image and ranking figures are meaningless
    (use :func:`threshold_report`). `probs` must be probabilities when `predictions` is not
    given; with `predictions`, any finite scores (logits too) rank.
    """
    probs, y = check_scores_and_targets(probs, targets, probabilities=predictions is None)
    if probs.shape[1] < 2:
        raise ValueError(
            f"evaluate needs at least 2 labels, got shape {tuple(probs.shape)}: with one label "
            "per-image and ranking metrics are meaningless; use threshold_report"
        )
    pred = apply_thresholds(probs, thresholds) if predictions is None else predictions
    pred = check_targets(pred, probs.shape, "predictions")
    y_np, p_np, s_np = y.numpy(), pred.numpy(), probs.numpy()
    rows = {("mAP", "macro"): mean_average_precision(probs, y)}
    prf = precision_recall_f1(y, pred)  # the one count of precision, recall and F1
    for name in ("precision", "recall", "F1"):
        rows[(name, "micro")] = prf[f"micro_{name}"]
        rows[(name, "macro")] = float(prf[name].mean())
        rows[(name, "samples")] = prf[f"samples_{name}"]
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


def threshold_report(
    probs: torch.Tensor, targets: torch.Tensor, vocab: Sequence[str], thresholds=0.5
) -> pd.DataFrame:
    """Per label: its threshold, support, predicted count, precision, recall and F1.

    Like :func:`per_label_report` but for any thresholds (one or one per label), and with
    ``micro`` and ``macro`` rows at the bottom. Precision with nothing predicted is 0.
    """
    probs, y = check_scores_and_targets(probs, targets, vocab=vocab)
    vocab = _check_vocab(vocab, probs.shape[1])
    t = per_label_thresholds(thresholds, probs.shape[1], probs.dtype)
    pred = apply_thresholds(probs, t)
    prf = precision_recall_f1(y, pred)
    y, pred = y.numpy(), pred.numpy()
    table = pd.DataFrame(
        {
            "threshold": t.tolist(),
            "support": y.sum(0),
            "predicted": pred.sum(0),
            "precision": prf["precision"],
            "recall": prf["recall"],
            "F1": prf["F1"],
        },
        index=pd.Index(vocab, name="label"),
    )
    table.loc["micro"] = [
        np.nan, y.sum(), pred.sum(), prf["micro_precision"], prf["micro_recall"], prf["micro_F1"]
    ]  # fmt: skip
    table.loc["macro"] = [
        np.nan, y.sum(), pred.sum(), *(prf[k].mean() for k in ("precision", "recall", "F1"))
    ]  # fmt: skip
    return table.astype({"support": int, "predicted": int})
