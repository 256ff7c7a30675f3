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


def test_threshold_explorer_toggle_buttons_fit_their_labels():
    """ipywidgets gives each toggle button a fixed width that cuts 'one global threshold'
    short; the explorer sizes the buttons to their labels (issue 21)."""
    pytest.importorskip("ipywidgets")
    mode = threshold_explorer(PROBS, TARGETS, VOCAB, 0.5).children[0]
    assert mode.style.button_width == "auto"


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


# --- Chapter 10: the prediction explorer -----------------------------------------------------


def _classifier():
    from torch import nn

    from helpers.predict import Classifier, Preprocessing

    class MeanModel(nn.Module):  # logits (4m, -4m) from the image's mean m in [-2, 2]
        def forward(self, x):
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([4 * m, -4 * m], dim=1)

    prep = Preprocessing(image_size=8, mean=(0.5,), std=(0.25,))
    return Classifier(
        MeanModel(), {"name": "MeanModel"}, ["cat", "dog"], prep, torch.tensor([0.5, 0.1])
    )


def _pngs(tmp_path):
    from PIL import Image

    Image.new("L", (8, 8), 255).save(tmp_path / "white.png")  # logits (8, -8)
    Image.new("L", (8, 8), 128).save(tmp_path / "grey.png")  # m = 0.0078: probs ~ (0.508, 0.492)
    return {"white": tmp_path / "white.png", "grey": tmp_path / "grey.png"}


def test_prediction_view_tuned_and_global_thresholds(tmp_path):
    from helpers.widgets import prediction_view

    images = _pngs(tmp_path)
    view = prediction_view(_classifier(), images["grey"])
    assert view.source == "grey.png" and view.error == ""
    assert view.table["predicted"].to_dict() == {"cat": True, "dog": True}  # tuned: 0.5, 0.1
    assert view.image.shape == (1, 8, 8) and view.image.max() <= 1
    assert view.image[0, 0, 0].item() == pytest.approx(128 / 255)  # un-normalised
    view = prediction_view(_classifier(), images["grey"], threshold=0.5)
    assert view.table["predicted"].to_dict() == {"cat": True, "dog": False}
    assert view.table["threshold"].tolist() == [0.5, 0.5]


def test_prediction_view_of_a_bad_file_holds_the_error(tmp_path):
    from helpers.widgets import plot_prediction, prediction_view, render_prediction_html

    view = prediction_view(_classifier(), b"not an image", name="upload.png")
    assert view.table is None and "cannot decode upload.png" in view.error
    assert "cannot decode upload.png" in render_prediction_html(view)
    plot_prediction(view)  # draws a message, does not fail


def test_plot_prediction_bars_in_vocabulary_order(tmp_path):
    import matplotlib.pyplot as plt

    from helpers.widgets import plot_prediction, prediction_view

    view = prediction_view(_classifier(), _pngs(tmp_path)["white"])
    fig = plot_prediction(view)
    bars = fig.axes[1].patches
    assert [b.get_width() for b in bars] == pytest.approx(
        [torch.sigmoid(torch.tensor(8.0)).item(), torch.sigmoid(torch.tensor(-8.0)).item()]
    )
    assert fig.axes[1].get_title() == "predicted: cat"
    plt.close(fig)


def test_prediction_explorer_updates_on_pick_upload_and_slider(tmp_path):
    pytest.importorskip("ipywidgets")
    import datetime

    from helpers.widgets import prediction_explorer, prediction_view, render_prediction_html

    clf, images = _classifier(), _pngs(tmp_path)
    box = prediction_explorer(clf, images)
    (picker, upload), (mode, slider) = box.children[0].children, box.children[1].children
    figure, text = box.children[2], box.children[3]
    assert text.value == render_prediction_html(prediction_view(clf, images["white"], "white"))
    assert figure.value[:4] == b"\x89PNG" and slider.disabled

    picker.value = "grey"  # observers run without a browser
    assert text.value == render_prediction_html(prediction_view(clf, images["grey"], "grey"))

    mode.value = "one for all labels"
    assert not slider.disabled
    slider.value = 0.6
    expected = prediction_view(clf, images["grey"], "grey", threshold=0.6)
    assert text.value == render_prediction_html(expected) and "predicted none" in text.value

    content = images["white"].read_bytes()
    upload.value = (
        {
            "name": "mine.png",
            "type": "image/png",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        },
    )
    expected = prediction_view(clf, content, "mine.png", threshold=0.6)
    assert (
        text.value == render_prediction_html(expected) and "mine.png: predicted cat" in text.value
    )

    upload.value = (
        {
            "name": "notes.txt",
            "type": "text/plain",
            "size": 5,
            "content": memoryview(b"hello"),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        },
    )
    assert "cannot decode notes.txt" in text.value  # a bad upload is shown, not raised


def test_explorer_view_refuses_what_every_report_refuses():
    probs = torch.tensor([[0.9, 0.2], [0.4, 0.7]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        explorer_view(torch.tensor([[0.9, float("nan")], [0.4, 0.7]]), torch.eye(2), ["a", "b"])
    with pytest.raises(ValueError, match="targets must be 0 or 1"):
        explorer_view(probs, torch.eye(2) * 0.9, ["a", "b"])
    with pytest.raises(ValueError, match="one number or one per label"):
        explorer_view(probs, torch.eye(2), ["a", "b"], [0.5, 0.5, 0.5])


def test_live_or_snapshot_carries_the_widget_and_its_snapshot():
    import ipywidgets as w

    from helpers.widgets import LiveOrSnapshot

    shown = LiveOrSnapshot(w.IntSlider(3), "<b>snapshot</b>")
    bundle = shown._repr_mimebundle_()
    assert bundle["text/html"] == "<b>snapshot</b>"
    assert "application/vnd.jupyter.widget-view+json" in bundle  # Jupyter shows it live


def _toggles(widget):
    import ipywidgets as w

    if isinstance(widget, w.ToggleButtons):
        yield widget
    for child in getattr(widget, "children", ()):
        yield from _toggles(child)


def test_toggle_buttons_show_their_whole_labels(tmp_path):
    """ipywidgets draws a toggle button 72 px wide and cuts a longer label short."""
    from helpers.widgets import precision_promise_explorer, prediction_explorer

    boxes = [
        threshold_explorer(PROBS, TARGETS, VOCAB, 0.5, n_examples=4),
        prediction_explorer(_classifier(), _pngs(tmp_path)),
        precision_promise_explorer(PROBS, TARGETS, PROBS, TARGETS, VOCAB, 0.9),
    ]
    toggles = [toggle for box in boxes for toggle in _toggles(box)]
    assert len(toggles) == 3
    assert all(toggle.style.button_width == "auto" for toggle in toggles)
