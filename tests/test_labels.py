import pandas as pd
import pytest
import torch
from sklearn.preprocessing import MultiLabelBinarizer

from helpers.labels import (
    build_vocab,
    cooccurrence,
    decode,
    label_cardinality,
    label_density,
    label_frequency,
    label_summary,
    multi_hot,
)

# A hand-checkable example: 4 images, 3 labels.
SETS = [["cat", "dog"], ["dog"], [], ["bird", "cat", "dog"]]
VOCAB = ["bird", "cat", "dog"]


def test_build_vocab_is_sorted_and_unique():
    assert build_vocab(SETS) == VOCAB


def test_build_vocab_rejects_all_empty():
    with pytest.raises(ValueError, match="no labels"):
        build_vocab([[], []])


def test_multi_hot_by_hand():
    expected = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.float32)
    assert torch.equal(multi_hot(SETS, VOCAB), expected)


def test_multi_hot_matches_sklearn():
    mlb = MultiLabelBinarizer(classes=VOCAB)
    assert torch.equal(multi_hot(SETS, VOCAB), torch.tensor(mlb.fit_transform(SETS)).float())


def test_round_trip():
    assert decode(multi_hot(SETS, VOCAB), VOCAB) == [sorted(s) for s in SETS]


def test_decode_threshold_and_single_row():
    probs = torch.tensor([0.2, 0.5, 0.9])
    assert decode(probs, VOCAB) == [["cat", "dog"]]
    assert decode(probs, VOCAB, threshold=0.6) == [["dog"]]


def test_decode_wrong_width():
    with pytest.raises(ValueError, match="3 names"):
        decode(torch.zeros(2, 4), VOCAB)


def test_unknown_label_names_sample_and_label():
    with pytest.raises(KeyError, match=r"sample 1: unknown label 'dgo'"):
        multi_hot([["cat"], ["dgo"]], VOCAB)


def test_string_instead_of_list_is_an_error():
    with pytest.raises(TypeError, match="sample 0"):
        multi_hot(["cat dog"], VOCAB)


def test_duplicate_label_in_a_set_counts_once():
    assert multi_hot([["dog", "dog"]], VOCAB).tolist() == [[0, 0, 1]]


def test_statistics_by_hand():
    y = multi_hot(SETS, VOCAB)
    # 2 + 1 + 0 + 3 labels over 4 images
    assert label_cardinality(y) == pytest.approx(6 / 4)
    assert label_density(y) == pytest.approx(6 / 12)
    freq = label_frequency(y, VOCAB)
    assert freq["label"].tolist() == ["dog", "cat", "bird"]
    assert freq["count"].tolist() == [3, 2, 1]
    assert freq["fraction"].tolist() == pytest.approx([0.75, 0.5, 0.25])


def test_cooccurrence_by_hand():
    co = cooccurrence(multi_hot(SETS, VOCAB), VOCAB)
    expected = pd.DataFrame([[1, 1, 1], [1, 2, 2], [1, 2, 3]], index=VOCAB, columns=VOCAB)
    pd.testing.assert_frame_equal(co, expected, check_dtype=False)


def test_summary():
    s = label_summary(multi_hot(SETS, VOCAB))
    assert s["images"] == 4
    assert s["images with no label"] == 1
    assert s["distinct label sets"] == 4


def test_summary_keeps_counts_as_integers():
    s = label_summary(multi_hot(SETS, VOCAB))
    assert isinstance(s["images"], int) and isinstance(s["distinct label sets"], int)


# --- checks shared by every helper ------------------------------------------------------------


def test_decode_refuses_logits_and_bad_thresholds():
    with pytest.raises(ValueError, match=r"(?s)outside \[0, 1\].*not logits"):
        decode(torch.tensor([[2.0, -1.0, 0.3]]), VOCAB)
    with pytest.raises(ValueError, match=r"thresholds must be in \[0, 1\]"):
        decode(torch.tensor([[0.2, 0.6, 0.3]]), VOCAB, threshold=float("nan"))
    assert decode(torch.tensor([[0.2, 0.6, 0.3]]), VOCAB, [0.1, 0.7, 0.3]) == [["bird", "dog"]]


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan")])
def test_label_statistics_refuse_targets_that_are_not_0_or_1(bad):
    targets = multi_hot(SETS, VOCAB)
    targets[0, 0] = bad
    with pytest.raises(ValueError, match="must be 0 or 1"):
        label_frequency(targets, VOCAB)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        label_summary(targets)


def test_label_statistics_check_shapes():
    with pytest.raises(ValueError, match="targets have 3 columns but vocab has 2 names"):
        label_frequency(multi_hot(SETS, VOCAB), VOCAB[:2])
    with pytest.raises(ValueError, match=r"at least one image; got shape \(0, 3\)"):
        label_cardinality(torch.zeros(0, 3))


def test_checks_name_the_label_when_a_vocabulary_is_known():
    from helpers.labels import check_scores, check_targets

    with pytest.raises(ValueError, match=r"first at image 1, label 'cat' \(column 1\): 1.5"):
        check_scores([[0.1, 0.2], [0.3, 1.5]], vocab=["dog", "cat"])
    with pytest.raises(ValueError, match=r"first at image 0, label 1: 1.5"):
        check_scores([[0.1, 1.5]])
    with pytest.raises(ValueError, match=r"first at label 'cat' \(column 1\): 0.5"):
        check_targets([1, 0.5], vocab=["dog", "cat"])
    with pytest.raises(ValueError, match=r"first at index 1: 0.5"):
        check_targets([1, 0.5])


def test_check_targets_soft_and_unknown_options():
    from helpers.labels import check_targets

    soft = torch.tensor([[0.9, 0.1]])
    assert check_targets(soft, soft=True).dtype == torch.float32
    with pytest.raises(ValueError, match="must be 0 or 1"):
        check_targets(soft)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\];\n1 of 2"):
        check_targets([[0.5, 1.5]], soft=True)
    unknown = torch.tensor([[1.0, float("nan")]])
    assert torch.isnan(check_targets(unknown, unknown=True)[0, 1])
    with pytest.raises(ValueError, match=r"must be 0, 1 or NaN \(unknown\)"):
        check_targets([[0.5, float("nan")]], unknown=True)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        check_targets(unknown)  # NaN is refused unless asked for


def test_check_scores_reads_python_floats_as_float64():
    from helpers.labels import check_scores

    x = check_scores([[0.9, 0.1]])
    assert x.dtype == torch.float64 and x[0, 0].item() == 0.9


def test_duplicate_vocabulary_names_are_named():
    with pytest.raises(ValueError, match=r"duplicate names: \['a'\]"):
        multi_hot([["a"]], ["a", "b", "a"])
