"""A checkpoint resumes only the run that wrote it: other data, loss, model or a damaged
file is refused with an error that names the file and the values that differ."""

import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, Subset

from helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from helpers.losses import SigmoidFocalLoss
from helpers.models import SmallCNN
from helpers.train import TrainConfig, fit


@pytest.fixture(scope="module")
def written(tmp_path_factory, quadrant_loaders, new_model):
    """A finished one-epoch run's checkpoint (batch 32, 256 images, BCE, SmallCNN width 8)."""
    path = tmp_path_factory.mktemp("resume") / "run.pt"
    train, val = quadrant_loaders(batch_size=32)
    config = TrainConfig(epochs=1, amp=False, progress=False, checkpoint=str(path))
    fit(new_model(), train, val, nn.BCEWithLogitsLoss(), config)
    return path


@pytest.fixture
def resume(written, tmp_path, quadrant_loaders, new_model):
    """resume(train=None, loss=None, model=None, path=None): fit from a copy of `written`."""

    def run(train=None, loss=None, model=None, path=None):
        if path is None:
            path = tmp_path / "copy.pt"
            shutil.copy(written, path)
        default_train, val = quadrant_loaders(batch_size=32)
        config = TrainConfig(epochs=1, amp=False, progress=False, checkpoint=str(path))
        loss = loss or nn.BCEWithLogitsLoss()
        return fit(model or new_model(), train or default_train, val, loss, config)

    return run


def test_the_same_run_resumes(resume, written):
    history = resume()
    assert history["val_mAP"].tolist() == [load_checkpoint(written)["history"][0]["val_mAP"]]


def test_another_batch_size_is_refused(resume, quadrant_data):
    other = DataLoader(quadrant_data(256, 0), batch_size=64, shuffle=True)
    expected = (
        r"copy.pt was written with steps_per_epoch=8, batch_size=32; "
        r"this run asks for steps_per_epoch=4, batch_size=64: delete the file"
    )
    with pytest.raises(ValueError, match=expected):
        resume(train=other)


def test_other_data_with_as_many_steps_is_refused(resume, quadrant_data):
    other = DataLoader(Subset(quadrant_data(256, 0), range(250)), batch_size=32, shuffle=True)
    assert len(other) == 8  # the same number of steps: only the data size tells
    with pytest.raises(ValueError, match=r"with train_size=256; this run asks for train_size=250"):
        resume(train=other)


def test_other_loss_weights_are_refused(resume):
    weighted = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"loss.pos_weight=None; .* loss.pos_weight=\[1.0, 2.0"):
        resume(loss=weighted)


def test_another_loss_is_refused(resume):
    expected = r"loss=torch.nn.modules.loss.BCEWithLogitsLoss.* asks for loss=helpers.losses.Sigm"
    with pytest.raises(ValueError, match=expected):
        resume(loss=SigmoidFocalLoss())


def test_another_model_is_refused(resume):
    torch.manual_seed(0)
    expected = r"model.features.0.0.weight=\[8, 1, 3, 3\].* asks for .*0.weight=\[16, 1, 3, 3\]"
    with pytest.raises(ValueError, match=expected):
        resume(model=SmallCNN(n_labels=4, width=16))


def test_a_checkpoint_without_a_run_record_is_refused(resume, written, tmp_path):
    state = load_checkpoint(written)
    del state["run"]
    save_checkpoint(tmp_path / "old.pt", state)
    with pytest.raises(ValueError, match=r"old.pt lacks \['run'\]"):
        resume(path=tmp_path / "old.pt")


def test_truncated_or_empty_checkpoints_are_refused_by_name(resume, written, tmp_path):
    data = written.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) - 100])
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ["cut.pt", "empty.pt"]:
        with pytest.raises(CheckpointError, match=name):
            resume(path=tmp_path / name)


def float_fields(obj, prefix=()):
    """Every place in a state that holds a float: (path, index in a tensor or None)."""
    if isinstance(obj, torch.Tensor):
        return [(prefix, i) for i in range(obj.numel())] if obj.is_floating_point() else []
    if isinstance(obj, float):
        return [(prefix, None)]
    if isinstance(obj, dict):
        items = obj.items()
    else:
        items = enumerate(obj) if isinstance(obj, list | tuple) else []
    return [field for k, v in items for field in float_fields(v, (*prefix, k))]


def with_nan(obj, path, index):
    """A copy of `obj` with NaN at `path` (element `index` of a tensor there, if not None)."""
    if not path:
        if index is None:
            return float("nan")
        obj = obj.clone()
        obj.view(-1)[index] = float("nan")
        return obj
    key, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, key: with_nan(obj[key], rest, index)}
    items = list(obj)
    items[key] = with_nan(items[key], rest, index)
    return type(obj)(items)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_field_replaced_by_nan_is_refused_never_loaded(resume, written, tmp_path, data):
    """Even in an intact file (as if it had been written so), a NaN anywhere is refused by name."""
    state = load_checkpoint(written)
    path, index = data.draw(st.sampled_from(float_fields(state)))
    save_checkpoint(tmp_path / "nan.pt", with_nan(state, path, index))
    field = ".".join(map(str, path)).replace(".", r"\.")
    with pytest.raises(ValueError, match=rf"nan.pt holds NaN or infinite values in {field}"):
        resume(path=tmp_path / "nan.pt")
