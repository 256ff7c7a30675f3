"""One threshold convention in the whole package: a number in [0, 1], or inf for "never
predict this label" (chapter 12), in per_label_thresholds, apply_thresholds, decode,
prediction tables and the classifier file (which stores inf as "never")."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.labels import apply_thresholds, decode, per_label_thresholds
from helpers.models import SmallCNN
from helpers.predict import Preprocessing, load_classifier, prediction_table, save_classifier

VOCAB = ["cat", "dog", "bird"]
PREP = Preprocessing(image_size=8, channels=1)
ARCH = {"name": "SmallCNN", "kwargs": {"n_labels": 3, "width": 4, "blocks": 1}}

probability = st.floats(0, 1, width=32)
threshold = st.one_of(st.floats(0, 1, width=32), st.just(math.inf))


@settings(max_examples=60, deadline=None)
@given(
    probs=st.lists(st.lists(probability, min_size=3, max_size=3), min_size=1, max_size=6),
    thresholds=st.lists(threshold, min_size=3, max_size=3),
)
def test_inf_never_predicts_and_every_other_threshold_is_greater_or_equal(probs, thresholds):
    p = torch.tensor(probs)
    pred = apply_thresholds(p, thresholds)
    for j, t in enumerate(thresholds):
        if t == math.inf:
            assert pred[:, j].sum() == 0  # not even a probability of exactly 1.0
        else:
            assert pred[:, j].tolist() == (p[:, j] >= t).long().tolist()
    names = decode(p, VOCAB, thresholds)
    assert names == [[VOCAB[j] for j in range(3) if row[j]] for row in pred.tolist()]


def test_a_threshold_of_1_predicts_a_certain_label_but_inf_does_not():
    certain = torch.tensor([[1.0, 1.0, 1.0]])  # float32 sigmoid is exactly 1 from logit ~17
    assert decode(certain, VOCAB, [1.0, math.inf, 0.5]) == [["cat", "bird"]]
    assert apply_thresholds(certain, math.inf).tolist() == [[0, 0, 0]]


@pytest.mark.parametrize(
    ("thresholds", "match"),
    [
        ([0.5, float("nan"), 0.5], r"label 1 \('dog'\) has nan"),
        ([0.5, 0.5, -math.inf], r"label 2 \('bird'\) has -inf"),
        ([1.5, 0.5, 0.5], r"label 0 \('cat'\) has 1\.5"),
        ([0.5, -0.25, 2.0], r"label 1 \('dog'\) has -0\.25 \(2 bad of 3\)"),
    ],
)
def test_refusals_name_the_label_and_the_value(thresholds, match):
    with pytest.raises(ValueError, match=r"in \[0, 1\], or inf for 'never predict'; " + match):
        per_label_thresholds(thresholds, 3, vocab=VOCAB)
    with pytest.raises(ValueError, match=match):
        decode(torch.full((1, 3), 0.5), VOCAB, thresholds)


def test_without_names_the_refusal_gives_the_index_or_says_every_label():
    with pytest.raises(ValueError, match=r"label 2 has -inf"):
        apply_thresholds(torch.full((1, 3), 0.5), [0.5, 0.5, -math.inf])
    with pytest.raises(ValueError, match=r"every label has nan"):
        apply_thresholds(torch.full((1, 3), 0.5), float("nan"))


def test_prediction_table_never_predicts_an_inf_label():
    table = prediction_table(torch.tensor([1.0, 0.2, 0.9]), VOCAB, [math.inf, 0.1, 0.5])
    assert table["predicted"].to_dict() == {"cat": False, "dog": True, "bird": True}
    assert table.loc["cat", "threshold"] == math.inf


def _saved(tmp_path, thresholds, name="c.pt"):
    torch.manual_seed(0)
    path = tmp_path / name
    save_classifier(path, SmallCNN(n_labels=3, width=4, blocks=1), ARCH, VOCAB, PREP, thresholds)
    return path


@settings(max_examples=15, deadline=None)
@given(thresholds=st.lists(threshold, min_size=3, max_size=3))
def test_the_classifier_file_stores_inf_as_never_and_reloads_every_threshold_exactly(
    tmp_path_factory, thresholds
):
    path = _saved(tmp_path_factory.mktemp("c"), thresholds)
    stored = torch.load(path, weights_only=True)["thresholds"]
    assert stored == ["never" if t == math.inf else t for t in thresholds]
    assert all(type(x) is float for x in stored if x != "never")  # numbers, as in older files
    assert load_classifier(path).thresholds.tolist() == thresholds


def _edited(tmp_path, thresholds):
    """A saved file whose thresholds are replaced (and its checksum made to match)."""
    from helpers import predict

    path = _saved(tmp_path, [0.5, 0.5, 0.5])
    state = torch.load(path, weights_only=True)
    state["thresholds"] = thresholds
    state["sha256"] = predict._checksum(state)
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("thresholds", "match"),
    [
        (["sometimes", 0.5, 0.5], r"label 0 \('cat'\) has 'sometimes'"),
        ([0.5, 1.0000001, 0.5], r"label 1 \('dog'\) has 1\.0000001"),
        ([0.5, 0.5, -math.inf], r"label 2 \('bird'\) has -inf"),
        ([0.5, True, 0.5], r"label 1 \('dog'\) has True"),
        ([math.inf, 0.5, 0.5], r"label 0 \('cat'\) has inf"),  # the file says "never"
    ],
)
def test_a_file_with_a_bad_threshold_is_refused_naming_label_and_value(tmp_path, thresholds, match):
    path = _edited(tmp_path, thresholds)
    with pytest.raises(ValueError, match=r"field 'thresholds' must be numbers in \[0, 1\] or "
                       r"'never'; " + match):  # fmt: skip
        load_classifier(path)


def test_saving_refuses_a_bad_threshold_naming_the_label(tmp_path):
    with pytest.raises(ValueError, match=r"label 2 \('bird'\) has nan"):
        _saved(tmp_path, [0.5, 0.5, float("nan")])
