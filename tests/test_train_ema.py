"""TrainConfig(ema_decay=...): fit keeps an exponential moving average of the weights,
validates it, checkpoints it, and ends with it in the model."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from helpers.checkpoint import load_checkpoint
from helpers.train import TrainConfig, evaluate_loss_and_map, fit


def test_ema_matches_a_hand_written_average(quadrant_loaders, new_model):
    """fit's EMA equals ema = p (first step), then ema = d * ema + (1 - d) * p, per step."""
    decay = 0.8
    train, val = quadrant_loaders()
    with_ema = new_model()
    fit(with_ema, train, val, nn.BCEWithLogitsLoss(), TrainConfig(epochs=2, amp=False,
        progress=False, ema_decay=decay))  # fmt: skip

    plain = new_model()
    steps = []

    class Recorder(nn.Module):  # records the weights after every optimiser step
        def forward(self, logits, y):
            steps.append({k: v.detach().clone() for k, v in plain.state_dict().items()})
            return nn.functional.binary_cross_entropy_with_logits(logits, y)

    fit(plain, train, val, Recorder(), TrainConfig(epochs=2, amp=False, progress=False))
    # per epoch the loss is called len(train) times in training, then len(val) times in
    # validation; training call k sees the weights after step k - 1, and the first
    # validation call sees the weights after the epoch's last step
    train_steps = 2 * len(train)
    weights = []
    calls_per_epoch = len(train) + len(val)
    for epoch in range(2):
        block = steps[epoch * calls_per_epoch : (epoch + 1) * calls_per_epoch]
        weights += block[1 : len(train)] + [block[len(train)]]  # after each of the epoch's steps
    assert len(weights) == train_steps
    ema = {k: v.clone() for k, v in weights[0].items()}
    for w in weights[1:]:
        for k in ema:
            if ema[k].is_floating_point():
                ema[k] = decay * ema[k] + (1 - decay) * w[k]
            else:
                ema[k] = w[k]  # batch-norm step counters are copied, not averaged
    # parameters only: a snapshot taken in the loss already has this step's batch-norm stats
    for k, v in with_ema.named_parameters():
        assert torch.allclose(v, ema[k], atol=1e-6), k


def test_validation_uses_the_ema_weights_and_the_model_ends_with_them(quadrant_loaders, new_model):
    train, val = quadrant_loaders()
    model = new_model()
    config = TrainConfig(epochs=2, amp=False, progress=False, ema_decay=0.9)
    history = fit(model, train, val, nn.BCEWithLogitsLoss(), config)
    loss, mAP = evaluate_loss_and_map(model, val, nn.BCEWithLogitsLoss(), torch.device("cpu"))
    assert history["val_loss"].iloc[-1] == pytest.approx(loss)
    assert history["val_mAP"].iloc[-1] == pytest.approx(mAP)


def test_no_ema_by_default_and_bad_decay_fails(quadrant_loaders, new_model):
    assert TrainConfig().ema_decay is None
    train, val = quadrant_loaders()
    for decay in [1.5, 0.0, 1.0]:
        with pytest.raises(ValueError, match=f"ema_decay must be between 0 and 1, got {decay}"):
            fit(new_model(), train, val, nn.BCEWithLogitsLoss(), TrainConfig(ema_decay=decay))


def test_resume_with_ema_is_exact(tmp_path, quadrant_loaders, new_model, crash):
    train, val = quadrant_loaders()
    config = TrainConfig(epochs=3, amp=False, progress=False, ema_decay=0.9,
                         checkpoint=str(tmp_path / "ema.pt"))  # fmt: skip
    straight = new_model()
    fit(straight, train, val, nn.BCEWithLogitsLoss(), TrainConfig(**{**config.__dict__,
        "checkpoint": None}))  # fmt: skip
    with pytest.raises(crash.error):
        fit(new_model(), crash.loader(train, at_batch=3), val, nn.BCEWithLogitsLoss(), config)
    assert load_checkpoint(config.checkpoint)["ema"]  # the average is in the checkpoint
    resumed = new_model()
    fit(resumed, train, val, nn.BCEWithLogitsLoss(), config)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_quadrant_data_still_learns_with_ema(new_model, quadrant_data):
    train = DataLoader(quadrant_data(256, 0), batch_size=32, shuffle=True)
    val = DataLoader(quadrant_data(128, 1), batch_size=64)
    config = TrainConfig(epochs=3, amp=False, progress=False, ema_decay=0.9)
    history = fit(new_model(), train, val, nn.BCEWithLogitsLoss(), config)
    assert history["val_mAP"].iloc[-1] > 0.8
