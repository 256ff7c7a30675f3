import pytest
import torch

from helpers.widgets import explorer_view, render_html, threshold_explorer

VOCAB = ["a", "b", "c"]
PROBS = torch.tensor([[0.9, 0.2, 0.50], [0.6, 0.7, 0.10], [0.4, 0.3, 0.80], [0.2, 0.1, 0.50]])
TARGETS = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 0, 0]])


def test_explorer_view_hand_computed():
    view = explorer_view(PROBS, TARGETS, VOCAB, 0.5, n_examples=3)
    assert view.examples["true"].tolist() == ["a c", "b", "a c"]
    assert view.examples["predicted"].tolist() == ["a c", "a b", "c"]
    assert view.examples["missed"].tolist() == ["-", "-", "a"]
    assert view.examples["extra"].tolist() == ["-", "a", "-"]
    # a at 0.5: predicted on images 0 and 1, present on 0 and 2 -> precision 1/2, recall 1/2.
    assert view.table.loc["a", "precision"] == pytest.approx(0.5)
    assert view.table.loc["a", "recall"] == pytest.approx(0.5)
    assert view.table.loc["micro", "support"] == 5


def test_explorer_view_per_label_thresholds():
    view = explorer_view(PROBS, TARGETS, VOCAB, torch.tensor([0.35, 0.65, 0.9]), n_examples=4)
    assert view.examples["predicted"].tolist() == ["a", "a b", "a", "-"]
    assert view.table.loc[VOCAB, "threshold"].tolist() == pytest.approx([0.35, 0.65, 0.9])
    assert view.table.loc["c", "predicted"] == 0


def test_render_html_contains_both_tables():
    html = render_html(explorer_view(PROBS, TARGETS, VOCAB, 0.5))
    assert html.count("<table") == 2
    assert "0.500" in html and "missed" in html


def test_threshold_explorer_updates_when_sliders_move():
    pytest.importorskip("ipywidgets")
    box = threshold_explorer(PROBS, TARGETS, VOCAB, 0.5, n_examples=4)
    mode, global_slider, label_box, output = box.children
    assert mode.value == "one global threshold"
    assert output.value == render_html(explorer_view(PROBS, TARGETS, VOCAB, 0.5, 4))
    assert label_box.layout.display == "none"

    global_slider.value = 0.35  # observers run without a browser
    assert output.value == render_html(explorer_view(PROBS, TARGETS, VOCAB, 0.35, 4))

    mode.value = "one per label"
    assert global_slider.layout.display == "none" and label_box.layout.display is None
    label_box.children[2].value = 0.9  # label c
    expected = explorer_view(PROBS, TARGETS, VOCAB, torch.tensor([0.5, 0.5, 0.9]), 4)
    assert output.value == render_html(expected)


def test_threshold_explorer_starts_in_per_label_mode_for_per_label_thresholds():
    pytest.importorskip("ipywidgets")
    box = threshold_explorer(PROBS, TARGETS, VOCAB, torch.tensor([0.35, 0.65, 0.9]))
    mode, _, label_box, _ = box.children
    assert mode.value == "one per label"
    assert [s.value for s in label_box.children] == pytest.approx([0.35, 0.65, 0.9])


def test_threshold_explorer_rounds_start_values_like_its_snapshot():
    """Sliders move in 0.01 steps: a start of 0.463 becomes 0.46. A score of 0.461 is
    predicted at 0.46 but not at 0.463, so a snapshot must use the rounded value."""
    pytest.importorskip("ipywidgets")
    probs = PROBS.clone()
    probs[3, 0] = 0.461
    box = threshold_explorer(probs, TARGETS, VOCAB, 0.463, n_examples=4)
    _, global_slider, _, output = box.children
    assert global_slider.value == 0.46
    assert output.value == render_html(explorer_view(probs, TARGETS, VOCAB, 0.46, 4))
    assert output.value != render_html(explorer_view(probs, TARGETS, VOCAB, 0.463, 4))
    # The same for per-label starts, rounded as a tensor is in the chapter.
    start = torch.tensor([0.463, 0.5, 0.5])
    box = threshold_explorer(probs, TARGETS, VOCAB, start, n_examples=4)
    _, _, label_box, output = box.children
    assert label_box.children[0].value == 0.46
    shown = start.round(decimals=2)
    assert output.value == render_html(explorer_view(probs, TARGETS, VOCAB, shown, 4))
