"""Calibration of multi-label probabilities, and thresholds that keep a precision promise.

A model is *calibrated* when, among the image-label pairs it scores 0.8, about 80% are
positive. Ranking metrics (AP, mAP) cannot see calibration: they only use the order of the
scores. This module measures calibration (expected calibration error, reliability-curve
data), repairs it on held-out data (temperature scaling, isotonic regression per label),
and chooses per-label thresholds that meet a precision target, naively or with a
Clopper-Pearson lower confidence bound (chapter 12).

Every function refuses input that would give a plausible wrong number: NaN or infinite
values, probabilities outside [0, 1], targets other than 0/1, mismatched shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from scipy.stats import beta

from helpers.labels import apply_thresholds, check_scores, check_targets, per_label_thresholds
from helpers.metrics import precision_curve, precision_recall_f1

__all__ = [
    "apply_isotonic",
    "apply_temperature",
    "clopper_pearson_lower",
    "expected_calibration_error",
    "fit_isotonic",
    "fit_temperature",
    "precision_promise_table",
    "precision_recall_at",
    "reliability_curve",
    "thresholds_for_precision",
]

_AVERAGES = ("macro", "pooled", None)


def _check_probs_targets(probs, targets, probabilities: bool = True):
    """Scores and 0/1 targets as float64 arrays of one shape, or the error of
    :func:`helpers.labels.check_scores` / :func:`helpers.labels.check_targets` (the one
    owner of these rules: an error names the image and label of the first bad entry).

    1-D input is one label (a column); 2-D input is images x labels.
    """
    x = torch.as_tensor(probs if isinstance(probs, torch.Tensor) else np.asarray(probs))
    one_label = x.ndim == 1
    name = "probs" if probabilities else "logits"
    x = check_scores(x.reshape(-1, 1) if one_label else x, name, probabilities)
    y = torch.as_tensor(targets)
    y = check_targets(y.reshape(-1, 1) if one_label and y.ndim == 1 else y, x.shape)
    p, t = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
    return (p.ravel(), t.ravel()) if one_label else (p, t)


# --- Measuring calibration --------------------------------------------------------------------


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins [k/B, (k+1)/B); the last bin also holds 1.0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)


def _check_bins(n_bins: int) -> None:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")


def reliability_curve(probs, targets, n_bins: int = 15) -> pd.DataFrame:
    """Data of a reliability diagram: per equal-width bin, its count, mean probability and
    fraction of positives. A calibrated model has ``frac_positive`` close to ``mean_prob``.

    All entries are pooled (pass one column for one label). Empty bins are kept with
    count 0 and NaN means, so the table always has `n_bins` rows.
    """
    _check_bins(n_bins)
    p, y = _check_probs_targets(probs, targets)
    p, y = p.ravel(), y.ravel()
    b = _bin_index(p, n_bins)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(b, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(b, weights=y, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": count,
            "mean_prob": mean_prob,
            "frac_positive": frac_pos,
        },
        index=pd.Index(range(n_bins), name="bin"),
    )


def _ece_1d(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    b = _bin_index(p, n_bins)
    gap = np.bincount(b, weights=p, minlength=n_bins) - np.bincount(b, weights=y, minlength=n_bins)
    # sum_b (n_b / N) |mean_prob_b - frac_pos_b| = sum_b |sum_p_b - sum_y_b| / N
    return float(np.abs(gap).sum() / len(p))


def expected_calibration_error(probs, targets, n_bins: int = 15, average: str | None = "macro"):
    """Expected calibration error (ECE) with `n_bins` equal-width bins (Guo et al., 2017).

    For one label: ECE = sum over bins b of (n_b / N) * |mean probability in b - fraction
    of positives in b|, bins [k/B, (k+1)/B) with the last bin closed at 1. This is the
    probability of the *positive* class, as torchmetrics' ``binary_calibration_error``
    with ``norm="l1"`` (which agrees whenever no probability equals exactly 1.0: it gives
    1.0 a bin of its own).

    For images x labels, `average` says how labels combine:
    ``"macro"`` computes each label's ECE and averages them (every label counts equally);
    ``"pooled"`` puts all image-label pairs into one histogram (frequent scores dominate,
    and with sparse labels the many confident negatives near 0 dilute it);
    ``None`` returns the per-label ECEs as an array.
    """
    _check_bins(n_bins)
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}; got {average!r}")
    p, y = _check_probs_targets(probs, targets)
    if p.ndim == 1 or average == "pooled":
        return _ece_1d(p.ravel(), y.ravel(), n_bins)
    per_label = np.array([_ece_1d(p[:, j], y[:, j], n_bins) for j in range(p.shape[1])])
    return per_label if average is None else float(per_label.mean())


# --- Repairing calibration on validation data -------------------------------------------------


def _check_logits(logits) -> np.ndarray:
    """Logits as a float64 (images, labels) array (:func:`helpers.labels.check_scores`)."""
    return check_scores(logits, "logits", probabilities=False).numpy().astype(np.float64)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of logits `z` (stable: log(1 + e^z) - y z)."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(
    logits, targets, per_label: bool = False, bounds: tuple[float, float] = (0.01, 100.0)
) -> torch.Tensor:
    """Temperature(s) T minimising the validation NLL of ``sigmoid(logits / T)``.

    Temperature scaling (Guo et al., 2017) divides every logit by one positive number, so
    it never changes the order of the scores (AP is unchanged) but stretches or squeezes
    the probabilities. ``per_label=True`` fits one T per label (the NLL is a sum over
    labels, so each label's T is a separate one-dimensional problem). Each problem is
    solved on log T by scipy's bounded scalar minimiser. Returns a 0-d tensor (one T) or
    one T per label.

    Refuses a fit whose optimum sits on a bound: then the NLL keeps falling towards T = 0
    (the logits separate the validation labels perfectly) or T = infinity (they carry no
    information), and no finite temperature is the answer.
    """
    z = _check_logits(logits)
    y = check_targets(targets, z.shape).numpy().astype(np.float64)
    if not 0 < bounds[0] < 1 < bounds[1]:
        raise ValueError(f"bounds must satisfy 0 < low < 1 < high; got {bounds}")
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    columns = [slice(None)] if not per_label else [slice(j, j + 1) for j in range(z.shape[1])]
    out = []
    for j, col in enumerate(columns):
        zj, yj = z[:, col], y[:, col]
        res = minimize_scalar(
            lambda log_t, zj=zj, yj=yj: _nll(zj / np.exp(log_t), yj),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-7},
        )
        if min(res.x - lo, hi - res.x) < 1e-3:
            where = f"label {j}" if per_label else "the logits"
            raise ValueError(
                f"temperature for {where} runs into the bound {np.exp(res.x):.3g}: the NLL has "
                "no minimum inside the bounds (perfectly separated or uninformative logits)"
            )
        out.append(np.exp(res.x))
    t = torch.tensor(out, dtype=torch.float64)
    return t if per_label else t[0]


def apply_temperature(logits, temperature) -> torch.Tensor:
    """Probabilities ``sigmoid(logits / T)`` in float64 (float32 would tie scores near 1)."""
    z = torch.from_numpy(_check_logits(logits))
    t = torch.as_tensor(temperature, dtype=torch.float64)
    if t.ndim > 1 or (t.ndim == 1 and len(t) != z.shape[1]) or not bool((t > 0).all()):
        raise ValueError(
            f"temperature must be one positive number or one per label ({z.shape[1]}); got {t}"
        )
    return torch.sigmoid(z / t)


def fit_isotonic(probs, targets) -> list:
    """One isotonic regression per label, fitted on validation (probability -> frequency).

    Isotonic regression (Zadrozny and Elkan, 2002) fits the non-decreasing step function
    closest to the 0/1 targets; each label gets its own. Non-decreasing, not increasing:
    scores in one step get the same value, so it can create ties, which changes AP
    slightly. Scores outside the validation range are clipped to its ends.
    """
    from sklearn.isotonic import IsotonicRegression

    p, y = _check_probs_targets(probs, targets)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (images x labels); got shape {p.shape}")
    return [
        IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p[:, j], y[:, j])
        for j in range(p.shape[1])
    ]


def apply_isotonic(calibrators: list, probs) -> torch.Tensor:
    """Calibrated probabilities (float64): each label's column through its own regression."""
    p = check_scores(probs, "probs").numpy().astype(np.float64)
    if p.ndim != 2 or p.shape[1] != len(calibrators):
        raise ValueError(
            f"probs must be 2-D with one column per calibrator ({len(calibrators)}); "
            f"got shape {p.shape}"
        )
    out = np.column_stack([c.predict(p[:, j]) for j, c in enumerate(calibrators)])
    return torch.from_numpy(out)


# --- Thresholds for a precision target --------------------------------------------------------


def clopper_pearson_lower(successes, trials, confidence: float = 0.95) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound on a binomial proportion.

    With probability at least `confidence` (over the draw of the `trials`), the true
    proportion is at or above the bound: the `1 - confidence` quantile of
    Beta(k, n - k + 1), and 0 when k = 0 (Clopper and Pearson, 1934). It is the lower end
    of the two-sided exact interval at level ``2 * confidence - 1``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    k, n = np.broadcast_arrays(k, n)
    bad = (k < 0) | (k > n) | (k != np.round(k)) | (n != np.round(n))
    if bad.any():
        i = tuple(np.argwhere(bad)[0]) if bad.ndim else ()
        raise ValueError(
            "successes and trials must be whole numbers with 0 <= successes <= trials; "
            f"got {k[i]:g} of {n[i]:g}" + (f" at index {i[0]}" if len(i) == 1 else "")
        )
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(1 - confidence, k, n - k + 1)
    return np.where(k > 0, bound, 0.0)


def thresholds_for_precision(
    probs, targets, target: float = 0.95, confidence: float | None = None
) -> torch.Tensor:
    """Per label, the lowest threshold whose precision on this data meets `target`.

    ``confidence=None`` is the naive rule: observed precision >= target. With a
    `confidence` (e.g. 0.95) the rule asks more: the Clopper-Pearson lower bound on the
    precision must be >= target. Among the thresholds that pass, the lowest is chosen,
    because it predicts the most and so has the highest recall. A label where no threshold
    passes gets ``inf``: predict it never (a promise kept by saying nothing).

    The bound holds for one threshold fixed in advance. Here it is checked at every
    candidate threshold and the lowest passing one is kept: a multiple comparison, so the
    chosen threshold's precision on new data can fall below `target` more often than
    ``1 - confidence``. Measure it (chapter 12 does).
    """
    if not 0 < target < 1:
        raise ValueError(f"target precision must be in (0, 1); got {target}")
    p, y = _check_probs_targets(probs, targets)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (images x labels); got shape {p.shape}")
    out = np.full(p.shape[1], np.inf)
    for j in range(p.shape[1]):
        t, tp, n = precision_curve(p[:, j], y[:, j])
        if confidence is None:
            ok = tp >= target * n
        else:
            ok = clopper_pearson_lower(tp, n, confidence) >= target
        if ok.any():
            out[j] = t[ok].min()
    return torch.from_numpy(out)


def precision_recall_at(probs, targets, thresholds) -> pd.DataFrame:
    """Per label at `thresholds` (``>=``): support, predicted, precision and recall.

    Decisions come from :func:`helpers.labels.apply_thresholds` and the counts from
    :func:`helpers.metrics.precision_recall_f1`, as in every report. A threshold of
    ``inf`` (from :func:`thresholds_for_precision`) means "never predict this label".
    Unlike scikit-learn's ``zero_division=0``, precision with nothing predicted is NaN:
    a label that is never predicted makes no claim, and it must not count as precision 0
    (nor as 1). Recall of a label with no positives is NaN too.
    """
    x = check_scores(probs, "probs")
    y = check_targets(targets, x.shape)
    t = torch.as_tensor(np.asarray(thresholds, dtype=np.float64))
    t = per_label_thresholds(t, x.shape[1], t.dtype)  # inf: never predict this label
    pred = apply_thresholds(x, t)
    prf = precision_recall_f1(y, pred, zero_division=np.nan)
    return pd.DataFrame(
        {
            "threshold": t.numpy(),
            "support": y.sum(0).numpy(),
            "predicted": pred.sum(0).numpy(),
            "precision": prf["precision"],
            "recall": prf["recall"],
        },
        index=pd.Index(range(x.shape[1]), name="label"),
    )


def precision_promise_table(
    val_probs,
    val_targets,
    test_probs,
    test_targets,
    vocab: Sequence[str],
    target: float = 0.95,
    confidence: float | None = None,
) -> pd.DataFrame:
    """Per label: the threshold chosen on validation to promise `target` precision, and what
    it gives on test (predicted, precision, recall, whether the promise was kept).

    ``confidence=None`` chooses naively (validation precision >= target); a number asks the
    Clopper-Pearson lower bound at that confidence to reach the target
    (:func:`thresholds_for_precision`). A label with no passing threshold is never predicted
    (threshold ``inf``): it claims nothing, so its promise counts as kept, with test
    precision NaN and recall 0. Chapter 12's widget redraws this table while its slider
    moves; the chapter reports and glues the same table.
    """
    vocab = list(vocab)
    t = thresholds_for_precision(val_probs, val_targets, target, confidence)
    if len(vocab) != len(t):
        raise ValueError(f"vocab has {len(vocab)} names but the scores {len(t)} labels")
    val = precision_recall_at(val_probs, val_targets, t)
    test = precision_recall_at(test_probs, test_targets, t)
    precision = test["precision"].to_numpy()
    return pd.DataFrame(
        {
            "threshold": t.numpy(),
            "val precision": val["precision"].to_numpy(),
            "test predicted": test["predicted"].to_numpy(),
            "test precision": precision,
            "test recall": test["recall"].to_numpy(),
            "promise kept": np.isnan(precision) | (precision >= target),
        },
        index=pd.Index(vocab, name="label"),
    )
