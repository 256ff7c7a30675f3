import numpy as np
import pytest
import torch

from helpers.calibration import precision_promise_table
from helpers.widgets import precision_promise_explorer, render_promise_html

VOCAB = ["a", "b"]
# label a: validation precision at 0.9/0.8/0.7/0.6/0.5 is 1, 1, 2/3, 3/4, 3/5
VAL_P = torch.tensor([[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.6, 0.6], [0.5, 0.5]])
VAL_Y = torch.tensor([[1, 1], [1, 0], [0, 0], [1, 0], [0, 0]])
TEST_P = torch.tensor([[0.95, 0.95], [0.65, 0.85], [0.62, 0.1], [0.3, 0.2]])
TEST_Y = torch.tensor([[1, 1], [0, 1], [1, 0], [1, 0]])


def test_view_naive_rule_hand_computed():
    view = precision_promise_table(VAL_P, VAL_Y, TEST_P, TEST_Y, VOCAB, target=0.7)
    assert view["threshold"].tolist() == pytest.approx([0.6, 0.9])
    assert view["val precision"].tolist() == pytest.approx([0.75, 1.0])
    # label a at 0.6 on test: predicted 0.95, 0.65, 0.62 -> 2 of 3 right, 2 of 3 positives
    assert view.loc["a", "test precision"] == pytest.approx(2 / 3)
    assert view.loc["a", "test recall"] == pytest.approx(2 / 3)
    assert not view.loc["a", "promise kept"]
    # label b at 0.9: predicted 0.95 only -> precision 1, recall 1/2
    assert view.loc["b", "test precision"] == 1.0 and view.loc["b", "test recall"] == 0.5
    assert view.loc["b", "promise kept"]


def test_view_with_a_bound_never_predicts_and_keeps_the_promise():
    view = precision_promise_table(VAL_P, VAL_Y, TEST_P, TEST_Y, VOCAB, 0.7, confidence=0.95)
    assert np.isinf(view["threshold"]).all()
    assert view["test precision"].isna().all() and (view["test recall"] == 0).all()
    assert view["promise kept"].all()
    html = render_promise_html(view, 0.7, 0.95)
    assert "never" in html and "kept on test for 2 of 2 labels" in html


def test_explorer_updates_when_the_slider_or_rule_moves():
    pytest.importorskip("ipywidgets")
    box = precision_promise_explorer(VAL_P, VAL_Y, TEST_P, TEST_Y, VOCAB, target=0.7)
    (slider, rule), output = box.children[0].children, box.children[1]
    expected = precision_promise_table(VAL_P, VAL_Y, TEST_P, TEST_Y, VOCAB, 0.7)
    assert output.value == render_promise_html(expected, 0.7, None)
    slider.value = 0.8
    expected = precision_promise_table(VAL_P, VAL_Y, TEST_P, TEST_Y, VOCAB, 0.8)
    assert output.value == render_promise_html(expected, 0.8, None)
    rule.value = rule.options[1]
    expected = precision_promise_table(VAL_P, VAL_Y, TEST_P, TEST_Y, VOCAB, 0.8, 0.95)
    assert output.value == render_promise_html(expected, 0.8, 0.95)
