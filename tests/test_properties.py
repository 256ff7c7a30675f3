"""Property-based tests (Hypothesis): on random scores and targets, every metric in
``helpers.metrics`` equals scikit-learn, or raises where scikit-learn would give no answer;
every report thresholds the same way; a damaged classifier file is never loaded.

The arrays include ties (scores drawn from a few values), constant columns, labels with no
positives, float32 and float64. Example counts are kept small so the whole file runs in
well under a minute (it is not marked slow).
"""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    coverage_error,
    f1_score,
    label_ranking_average_precision_score,
    label_ranking_loss,
    precision_score,
    recall_score,
)

from helpers.labels import apply_thresholds, decode
from helpers.metrics import (
    average_precision_by_hand,
    average_precisions,
    evaluate,
    mean_average_precision,
    per_label_report,
    precision_recall_f1,
    threshold_report,
    tune_global_threshold,
    tune_thresholds,
)
from helpers.models import SmallCNN
from helpers.predict import Preprocessing, load_classifier, prediction_table, save_classifier
from helpers.voc_training import false_positive_table, voc_average_precision, voc_label_report
from helpers.widgets import explorer_view

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DTYPES = st.sampled_from([np.float32, np.float64])


@st.composite
def cases(draw, min_labels=1, max_labels=4):
    """(scores, targets): scores in [0, 1] with ties and constant columns, 0/1 targets that
    may leave a label without positives."""
    n = draw(st.integers(1, 12))
    m = draw(st.integers(min_labels, max_labels))
    dtype = draw(DTYPES)
    grid = draw(st.sampled_from(["few", "many"]))
    values = (
        st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
        if grid == "few"
        else st.floats(0, 1, allow_nan=False, width=32 if dtype == np.float32 else 64)
    )
    scores = np.array(draw(st.lists(values, min_size=n * m, max_size=n * m)), dtype=dtype)
    scores = scores.reshape(n, m)
    if draw(st.booleans()):  # a constant column
        scores[:, draw(st.integers(0, m - 1))] = draw(values)
    targets = np.array(draw(st.lists(st.integers(0, 1), min_size=n * m, max_size=n * m)))
    return torch.from_numpy(scores), torch.from_numpy(targets.reshape(n, m))


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def sk_ap(y, s):
    """scikit-learn's AP of one label; 0 for a label with no positives (it warns)."""
    return quiet(average_precision_score, y, s)


# --- every metric equals scikit-learn --------------------------------------------------------


@FAST
@given(cases())
def test_average_precision_equals_scikit_learn(case):
    s, y = case
    ap = quiet(average_precisions, s, y)
    expected = [sk_ap(y[:, j].numpy(), s[:, j].numpy()) for j in range(s.shape[1])]
    np.testing.assert_allclose(ap, expected, atol=1e-6)
    assert quiet(mean_average_precision, s, y) == pytest.approx(np.mean(expected), abs=1e-6)
    for j in range(s.shape[1]):
        assert average_precision_by_hand(s[:, j], y[:, j]) == pytest.approx(expected[j], abs=1e-6)


@settings(FAST, max_examples=25)
@given(cases(), st.floats(0, 1))
def test_thresholded_metrics_equal_scikit_learn(case, t):
    s, y = case
    pred = (s.numpy() >= np.asarray(t, dtype=s.numpy().dtype)).astype(int)
    yn = y.numpy()
    report = quiet(per_label_report, s, y, [str(j) for j in range(s.shape[1])], t)
    table = threshold_report(s, y, [str(j) for j in range(s.shape[1])], t)
    for name, fn in [("precision", precision_score), ("recall", recall_score), ("F1", f1_score)]:
        per_label = [fn(yn[:, j], pred[:, j], zero_division=0) for j in range(yn.shape[1])]
        np.testing.assert_allclose(report[name].iloc[:-1], per_label, atol=1e-6)
        np.testing.assert_allclose(table[name].iloc[:-2], per_label, atol=1e-6)
        assert table.loc["macro", name] == pytest.approx(np.mean(per_label), abs=1e-6)
        micro = fn(yn.ravel(), pred.ravel(), zero_division=0)
        assert table.loc["micro", name] == pytest.approx(micro, abs=1e-6)
        if yn.shape[1] > 1:  # scikit-learn's samples average needs a multi-label matrix
            samples = fn(yn, pred, average="samples", zero_division=0)
            key = {"precision": "samples_precision", "recall": "samples_recall"}.get(name)
            got = precision_recall_f1(yn, pred)[key or "samples_F1"]
            assert got == pytest.approx(samples, abs=1e-6)


@settings(FAST, max_examples=25)
@given(cases(min_labels=2), st.floats(0, 1))
def test_evaluate_equals_scikit_learn(case, t):
    s, y = case
    table = quiet(evaluate, s, y, t)["value"]
    yn, sn = y.numpy(), s.numpy()
    pred = (sn >= np.asarray(t, dtype=sn.dtype)).astype(int)
    assert table["F1", "macro"] == pytest.approx(
        f1_score(yn, pred, average="macro", zero_division=0), abs=1e-6
    )
    assert table["F1", "samples"] == pytest.approx(
        f1_score(yn, pred, average="samples", zero_division=0), abs=1e-6
    )
    lrap = label_ranking_average_precision_score(yn, sn)
    assert table["label ranking AP", "samples"] == pytest.approx(lrap, abs=1e-6)
    assert table["coverage error", "samples"] == pytest.approx(coverage_error(yn, sn), abs=1e-6)
    assert table["ranking loss", "samples"] == pytest.approx(label_ranking_loss(yn, sn), abs=1e-6)


# --- threshold search: the docstring's tie rule, whatever the candidates' order ---------------


@FAST
@given(cases(), st.lists(st.floats(0, 1), min_size=1, max_size=8), st.randoms())
def test_tune_global_threshold_is_order_free_and_optimal(case, candidates, rnd):
    s, y = case
    t, best = tune_global_threshold(s, y, "micro_f1", candidates)
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert tune_global_threshold(s, y, "micro_f1", shuffled[::-1]) == (t, best)
    f1 = {c: precision_recall_f1(y, apply_thresholds(s, c))["micro_F1"] for c in candidates}
    assert best == pytest.approx(max(f1.values()), abs=1e-12)
    assert t == min(c for c, v in f1.items() if v == max(f1.values()))  # lowest of the best


@FAST
@given(cases())
def test_tune_thresholds_is_exact_and_picks_the_lowest_best_score(case):
    s, y = case
    tuned = tune_thresholds(s, y)
    assert tuned.dtype == s.dtype
    for j in range(s.shape[1]):
        if y[:, j].sum() == 0:
            assert tuned[j].item() == 0.5
            continue
        col, yj = s[:, j : j + 1], y[:, j : j + 1]
        f1 = {float(c): precision_recall_f1(yj, apply_thresholds(col, c))["F1"][0] for c in col}
        best = f1[tuned[j].item()]
        assert best == max(f1.values())
        assert tuned[j].item() == min(c for c, v in f1.items() if v == best)  # lowest wins


# --- one threshold rule in every report -------------------------------------------------------


@FAST
@given(cases(min_labels=2), st.data())
def test_every_report_thresholds_the_same_way(case, data):
    s, y = case
    m = s.shape[1]
    per_label = data.draw(st.booleans())
    # thresholds equal to some scores, so ">=" versus ">" would show
    pool = st.sampled_from(sorted(set(s.flatten().tolist())) + [0.0, 0.5, 1.0])
    t = torch.tensor(data.draw(st.lists(pool, min_size=m, max_size=m))) if per_label else 0.5
    t_np = np.broadcast_to(np.asarray(t, dtype=s.numpy().dtype), (m,))
    expected = (s.numpy() >= t_np).astype(int)
    vocab = [f"l{j}" for j in range(m)]
    assert apply_thresholds(s, t).numpy().tolist() == expected.tolist()
    assert (
        threshold_report(s, y, vocab, t)["predicted"].iloc[:m].tolist() == expected.sum(0).tolist()
    )
    view = explorer_view(s, y, vocab, t, n_examples=len(s))
    assert view.examples["predicted"].tolist() == [
        " ".join(v for v, e in zip(vocab, row, strict=True) if e) or "-" for row in expected
    ]
    assert decode(s, vocab, t) == [
        [v for v, e in zip(vocab, row, strict=True) if e] for row in expected
    ]
    for i in range(len(s)):
        table = prediction_table(s[i], vocab, t)
        assert table.loc[vocab, "predicted"].astype(int).tolist() == expected[i].tolist()
    no_ignore = torch.zeros_like(y)
    voc = quiet(voc_label_report, s, y, no_ignore, vocab, t)
    recall = [recall_score(y[:, j], expected[:, j], zero_division=0) for j in range(m)]
    np.testing.assert_allclose(voc["recall"].iloc[:m], recall, atol=1e-12)
    fp = false_positive_table(s, y, no_ignore, vocab, t, top=m)
    counts = (expected & (1 - y.numpy())).sum(0)
    assert dict(zip(fp["false positive"], fp["count"], strict=True)) == {
        v: c for v, c in zip(vocab, counts, strict=True) if c > 0
    }


@FAST
@given(cases(min_labels=2), st.data())
def test_voc_ap_equals_scikit_learn_on_the_kept_entries(case, data):
    s, y = case
    ignore = torch.tensor(
        data.draw(st.lists(st.booleans(), min_size=y.numel(), max_size=y.numel()))
    ).reshape(y.shape) & (y == 0)
    assume(not ignore.all(0).any())
    ap = quiet(voc_average_precision, s, y, ignore)
    for j in range(s.shape[1]):
        keep = ~ignore[:, j]
        assert ap[j].item() == pytest.approx(
            sk_ap(y[keep, j].numpy(), s[keep, j].numpy()), abs=1e-6
        )


# --- bad scores and targets are refused, by every function ----------------------------------

SCORERS = {
    "average_precisions": lambda s, y: average_precisions(s, y),
    "mean_average_precision": lambda s, y: mean_average_precision(s, y),
    "per_label_report": lambda s, y: per_label_report(s, y, list("abcd")[: s.shape[1]]),
    "threshold_report": lambda s, y: threshold_report(s, y, list("abcd")[: s.shape[1]]),
    "evaluate": lambda s, y: evaluate(s, y),
    "tune_global_threshold": lambda s, y: tune_global_threshold(s, y),
    "tune_thresholds": lambda s, y: tune_thresholds(s, y),
    "voc_average_precision": lambda s, y: voc_average_precision(s, y, torch.zeros_like(y)),
    "explorer_view": lambda s, y: explorer_view(s, y, list("abcd")[: s.shape[1]]),
}


@FAST
@given(cases(min_labels=2), st.sampled_from([math.nan, math.inf, -math.inf]), st.data())
def test_non_finite_scores_are_refused_everywhere(case, bad, data):
    s, y = case
    i, j = data.draw(st.integers(0, s.shape[0] - 1)), data.draw(st.integers(0, s.shape[1] - 1))
    s = s.clone()
    s[i, j] = bad
    for fn in SCORERS.values():
        with pytest.raises(ValueError, match=r"1 of \d+ \w+ are NaN or infinite"):
            quiet(fn, s, y)
    assert math.isnan(mean_average_precision(s, y, nonfinite="nan"))


@FAST
@given(cases(min_labels=2), st.sampled_from([0.7, 0.9, 0.5, math.nan, 2.0, -1.0]), st.data())
def test_targets_that_are_not_0_or_1_are_refused_everywhere(case, bad, data):
    s, y = case
    i, j = data.draw(st.integers(0, s.shape[0] - 1)), data.draw(st.integers(0, s.shape[1] - 1))
    y = y.double()
    y[i, j] = bad
    for fn in SCORERS.values():
        with pytest.raises(ValueError, match=r"(?s)must be 0 or 1 .*1 of \d+ values are not"):
            quiet(fn, s, y)
    # the same matrix with float 0.0/1.0 only is fine
    y[i, j] = 1.0
    quiet(mean_average_precision, s, y)


# --- a damaged classifier file is never loaded ----------------------------------------------

PREP = Preprocessing(image_size=16, channels=1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = SmallCNN(n_labels=3, width=4, blocks=2).eval()
    path = tmp_path_factory.mktemp("classifier") / "good.pt"
    arch = {"name": "SmallCNN", "kwargs": {"n_labels": 3, "width": 4, "blocks": 2}}
    save_classifier(path, model, arch, ["a", "b", "c"], PREP, [0.3, 0.5, 0.7])
    return path, path.read_bytes(), load_classifier(path)


def same(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return (
        a.vocab == b.vocab
        and a.preprocessing == b.preprocessing
        and torch.equal(a.thresholds, b.thresholds)
        and sa.keys() == sb.keys()
        and all(torch.equal(sa[k], sb[k]) for k in sa)
    )


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_truncated_classifier_is_refused_naming_the_file(saved, data, tmp_path_factory):
    path, content, _ = saved
    cut = data.draw(st.integers(0, len(content) - 1))
    bad = tmp_path_factory.mktemp("cut") / "cut.pt"
    bad.write_bytes(content[:cut])
    with pytest.raises(ValueError, match="cut.pt"):
        load_classifier(bad)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_flipped_bytes_are_refused_or_change_nothing(saved, data, tmp_path_factory):
    path, content, original = saved
    raw = bytearray(content)
    for _ in range(data.draw(st.integers(1, 3))):
        k = data.draw(st.integers(0, len(raw) - 1))
        raw[k] ^= data.draw(st.integers(1, 255))
    bad = tmp_path_factory.mktemp("flip") / "flip.pt"
    bad.write_bytes(bytes(raw))
    try:
        loaded = load_classifier(bad)
    except ValueError as err:
        assert "flip.pt" in str(err)
    else:  # the byte was padding the reader never uses: the contents must be untouched
        assert same(loaded, original)


FIELDS = ["weight", "threshold", "std", "mean", "image_size"]


@settings(max_examples=25, deadline=None)
@given(
    field=st.sampled_from(FIELDS),
    bad=st.sampled_from([math.nan, math.inf]),
    resign=st.booleans(),
    data=st.data(),
)
def test_a_field_replaced_by_nan_is_refused_naming_the_field(
    saved, field, bad, resign, data, tmp_path_factory
):
    """Edited with torch.save (so the file itself is well formed); with `resign` the checksum
    is recomputed, so the field check, not the checksum, has to catch it."""
    from helpers.predict import _checksum

    path, _, _ = saved
    state = torch.load(path, weights_only=True)
    if field == "weight":
        name = data.draw(
            st.sampled_from([k for k, v in state["model"].items() if v.is_floating_point()])
        )
        flat = state["model"][name].view(-1)
        flat[data.draw(st.integers(0, len(flat) - 1))] = bad
        expected = f"model.{name}"
    elif field == "threshold":
        state["thresholds"][data.draw(st.integers(0, 2))] = bad
        expected = "thresholds"
    else:
        value = state["preprocessing"][field]
        state["preprocessing"][field] = [bad] if isinstance(value, list) else bad
        expected = "preprocessing"
    if resign:
        state["sha256"] = _checksum(state)
    out = tmp_path_factory.mktemp("nan") / "edited.pt"
    torch.save(state, out)
    with pytest.raises(ValueError, match=rf"edited.pt: field '{expected}"):
        load_classifier(out)
