import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import helpers.train as train_module
from helpers.checkpoint import load_checkpoint
from helpers.train import TrainConfig, amp_settings, fit, make_optimizer


def quiet(**kw) -> TrainConfig:
    return TrainConfig(progress=False, **kw)


def test_amp_settings():
    assert amp_settings(torch.device("cpu"), enabled=False) == (None, False)
    assert amp_settings(torch.device("mps")) == (None, False)


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, None)])
def test_amp_on_a_cpu_uses_bf16_only_where_it_is_native(monkeypatch, native, expected):
    """Emulated bf16 on a CPU can be several times slower than fp32: then train in fp32."""
    monkeypatch.setattr(train_module, "cpu_native_bf16", lambda: native)
    assert amp_settings(torch.device("cpu")) == (expected, False)


def test_native_bf16_is_off_under_the_pins():
    """The test process runs under the AVX2 pin (conftest.py): bf16 is not native there."""
    assert amp_settings(torch.device("cpu")) == (None, False)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 5), (torch.float16, True)), ((8, 0), (torch.bfloat16, False))],
    ids=["T4-fp16-scaler", "A100-bf16"],
)
def test_amp_settings_on_cuda_asks_for_native_bf16(monkeypatch, capability, expected):
    """A T4 (7.5) only emulates bf16, although torch.cuda.is_bf16_supported() says True."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert amp_settings(torch.device("cuda")) == expected


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_fit_learns_and_reports_history(amp, quadrant_loaders, new_model, monkeypatch):
    monkeypatch.setattr(train_module, "cpu_native_bf16", lambda: True)  # bf16 even if emulated
    train, val = quadrant_loaders()
    history = fit(new_model(), train, val, nn.BCEWithLogitsLoss(), quiet(epochs=4, amp=amp))
    assert list(history.index) == [1, 2, 3, 4]
    assert list(history.columns) == [
        "train_loss",
        "val_loss",
        "val_mAP",
        "lr",
        "seconds",
        "img_per_s",
    ]
    assert history["train_loss"].iloc[-1] < 0.7 * history["train_loss"].iloc[0]
    assert history["val_mAP"].iloc[-1] > 0.9
    # OneCycle ends far below its peak learning rate
    assert history["lr"].iloc[-1] < 1e-4


def test_channels_last_trains_the_same_way(quadrant_loaders, new_model):
    """Same numbers up to float rounding (Adam amplifies rounding in near-zero gradients,
    so compare losses, not weights)."""
    train, val = quadrant_loaders()
    loss = nn.BCEWithLogitsLoss()
    a = fit(new_model(), train, val, loss, quiet(epochs=2, amp=False))
    b = fit(new_model(), train, val, loss, quiet(epochs=2, amp=False, channels_last=True))
    assert a["train_loss"].tolist() == pytest.approx(b["train_loss"].tolist(), rel=1e-3)
    assert a["val_mAP"].tolist() == pytest.approx(b["val_mAP"].tolist(), abs=0.01)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_resume_after_interruption_gives_identical_weights(
    tmp_path, amp, quadrant_loaders, new_model, crash, monkeypatch
):
    monkeypatch.setattr(train_module, "cpu_native_bf16", lambda: True)  # bf16 even if emulated
    train, val = quadrant_loaders()
    config = quiet(epochs=3, amp=amp, checkpoint=str(tmp_path / "run.pt"))

    straight = new_model()
    expected = fit(straight, train, val, nn.BCEWithLogitsLoss(), quiet(epochs=3, amp=amp))

    resumed = new_model()
    with pytest.raises(crash.error):
        fit(resumed, crash.loader(train, at_batch=3), val, nn.BCEWithLogitsLoss(), config)
    assert load_checkpoint(config.checkpoint)["epoch"] == 0  # epoch 1 finished and was saved
    resumed = new_model()  # a fresh process: nothing survives but the checkpoint
    history = fit(resumed, train, val, nn.BCEWithLogitsLoss(), config)

    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert history["val_mAP"].tolist() == expected["val_mAP"].tolist()
    assert not (tmp_path / "run.pt.tmp").exists()


class NaNAfter(nn.Module):
    """BCE that turns NaN at a chosen call, as a diverging run would."""

    def __init__(self, step: int):
        super().__init__()
        self.step, self.calls, self.bce = step, 0, nn.BCEWithLogitsLoss()

    def forward(self, logits, y):
        self.calls += 1
        loss = self.bce(logits, y)
        return loss * float("nan") if self.calls >= self.step else loss


def test_nan_loss_stops_with_epoch_and_step(tmp_path, quadrant_loaders, new_model):
    train, val = quadrant_loaders(batch_size=32)  # 8 steps per epoch
    config = quiet(epochs=3, amp=False, checkpoint=str(tmp_path / "c.pt"))
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 2, step 3: stopping") as e:
        # calls: 8 training steps + 2 validation batches in epoch 1, then step 3 of epoch 2
        fit(new_model(), train, val, NaNAfter(8 + 2 + 3), config)
    assert "c.pt" in str(e.value)
    assert load_checkpoint(config.checkpoint)["epoch"] == 0  # the good epoch is kept


def test_nan_loss_in_the_first_epoch_says_no_checkpoint_was_written(
    tmp_path, quadrant_loaders, new_model
):
    train, val = quadrant_loaders(batch_size=32)
    config = quiet(epochs=2, amp=False, checkpoint=str(tmp_path / "c.pt"))
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 2: .* nothing was written to"):
        fit(new_model(), train, val, NaNAfter(2), config)
    assert not (tmp_path / "c.pt").exists()
    with pytest.raises(FloatingPointError, match=r"set TrainConfig.checkpoint"):
        fit(new_model(), train, val, NaNAfter(2), quiet(epochs=2, amp=False))


def test_make_optimizer_gives_the_onecycle_schedule_fit_follows(quadrant_loaders, new_model):
    config = quiet(epochs=4, lr=1e-2, amp=False)
    optimizer, scheduler = make_optimizer(new_model(), config, steps_per_epoch=25)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-2 / 25)  # warm-up starts at lr / div_factor
    assert max(lrs) == pytest.approx(1e-2) and lrs.index(max(lrs)) == 29  # peak at 30%
    assert lrs[-1] < 1e-5
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["weight_decay"] == config.weight_decay

    train, val = quadrant_loaders(batch_size=32)  # 8 steps per epoch
    history = fit(new_model(), train, val, nn.BCEWithLogitsLoss(), quiet(epochs=2, amp=False))
    _, scheduler = make_optimizer(new_model(), quiet(epochs=2), steps_per_epoch=8)
    expected = []
    for _ in range(2):
        for _ in range(8):
            scheduler.optimizer.step()
            scheduler.step()
        expected.append(scheduler.get_last_lr()[0])
    assert history["lr"].tolist() == pytest.approx(expected)


def test_resume_is_exact_with_a_loader_that_has_its_own_generator(
    tmp_path, new_model, crash, quadrant_data
):
    """A seeded DataLoader generator would restart at the same state in a new process;
    fit reseeds it per epoch so the resumed epochs see the uninterrupted run's order."""

    def seeded_loaders():
        g = torch.Generator().manual_seed(123)
        train = DataLoader(quadrant_data(256, 0), batch_size=32, shuffle=True, generator=g)
        return train, DataLoader(quadrant_data(128, 1), batch_size=64)

    train, val = seeded_loaders()
    straight = new_model()
    fit(straight, train, val, nn.BCEWithLogitsLoss(), quiet(epochs=3, amp=False))

    config = quiet(epochs=3, amp=False, checkpoint=str(tmp_path / "g.pt"))
    train, val = seeded_loaders()
    partial = crash.loader(train, at_batch=2)
    partial.generator = train.generator  # the wrapper exposes the loader's generator
    with pytest.raises(crash.error):
        fit(new_model(), partial, val, nn.BCEWithLogitsLoss(), config)
    train, val = seeded_loaders()  # a fresh process: the generator starts over at seed 123
    resumed = new_model()
    fit(resumed, train, val, nn.BCEWithLogitsLoss(), config)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_with_other_settings_names_the_fields_and_the_file(
    tmp_path, quadrant_loaders, new_model
):
    train, val = quadrant_loaders()
    path = str(tmp_path / "run.pt")
    fit(
        new_model(), train, val, nn.BCEWithLogitsLoss(), quiet(epochs=1, amp=False, checkpoint=path)
    )
    before = load_checkpoint(path)
    other = quiet(epochs=2, lr=1e-3, amp=False, checkpoint=path)
    with pytest.raises(ValueError) as e:
        fit(new_model(), train, val, nn.BCEWithLogitsLoss(), other)
    assert str(e.value) == (
        f"checkpoint {path} was written with epochs=1, lr=0.003; this run asks for "
        "epochs=2, lr=0.001: delete the file or use the same settings"
    )
    assert load_checkpoint(path)["epoch"] == before["epoch"]  # the checkpoint is untouched
    # progress and checkpoint do not change the weights: they may differ
    same = TrainConfig(epochs=1, amp=False, checkpoint=path, progress=True)
    history = fit(new_model(), train, val, nn.BCEWithLogitsLoss(), same)
    assert history.to_dict() == pd.DataFrame(before["history"]).set_index("epoch").to_dict()


def test_resume_without_stored_scaler_state_on_a_device_that_wants_one(
    tmp_path, monkeypatch, quadrant_loaders, new_model, crash
):
    """A CPU (bf16, no scaler) checkpoint resumed on a T4 (fp16 + GradScaler): the stored
    scaler state is empty and must not be loaded ("The source state dict is empty")."""
    monkeypatch.setattr(train_module, "cpu_native_bf16", lambda: True)  # bf16 even if emulated
    train, val = quadrant_loaders()
    config = quiet(epochs=2, amp=True, checkpoint=str(tmp_path / "cpu.pt"))
    with pytest.raises(crash.error):
        fit(new_model(), crash.loader(train, at_batch=3), val, nn.BCEWithLogitsLoss(), config)
    assert load_checkpoint(config.checkpoint)["scaler"] == {}

    monkeypatch.setattr(
        train_module, "amp_settings", lambda device, enabled=True: (torch.bfloat16, True)
    )
    history = fit(new_model(), train, val, nn.BCEWithLogitsLoss(), config)
    assert list(history.index) == [1, 2]
    # a scaler now ran: its state holds the initial scale, never halved (no inf gradients)
    assert load_checkpoint(config.checkpoint)["scaler"]["scale"] == 2.0**16


def test_head_trains_at_lr_and_backbone_at_the_ratio():
    from helpers.models import resnet_multilabel

    model = resnet_multilabel("resnet18", n_labels=3, weights=None)
    config = TrainConfig(epochs=1, lr=1e-2, head="fc", backbone_lr_ratio=0.1)
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch=10)
    head, backbone = optimizer.param_groups
    assert {id(p) for p in head["params"]} == {id(p) for p in model.fc.parameters()}
    assert len(backbone["params"]) == len(list(model.parameters())) - 2
    assert scheduler.optimizer.param_groups[0]["max_lr"] == pytest.approx(1e-2)
    assert scheduler.optimizer.param_groups[1]["max_lr"] == pytest.approx(1e-3)


def test_frozen_parameters_are_left_out_of_the_optimizer():
    from helpers.models import resnet_multilabel

    model = resnet_multilabel("resnet18", n_labels=3, weights=None)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("fc.")
    optimizer, _ = make_optimizer(model, TrainConfig(head="fc"), steps_per_epoch=1)
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == 2


def test_a_wrong_head_name_fails_loudly():
    with pytest.raises(AttributeError, match="nope"):
        make_optimizer(nn.Linear(2, 2), TrainConfig(head="nope"), steps_per_epoch=1)
