"""helpers.inference: the one loop that runs a model over data. Each test can fail: the mode
is restored (also after an error), eval mode is used, outputs are ordinary CPU tensors,
`forward` and `per_batch` are applied, and inputs-only batches work."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers.inference import predict_probs, run_model

X = torch.linspace(-2, 2, 12).reshape(4, 3)
Y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])


class _Scale(torch.nn.Module):
    """Logit = 2 * input, plus a batch norm so train and eval modes give different outputs."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(3, affine=False)

    def forward(self, x):
        return 2 * x + 0 * self.norm(x)


@pytest.mark.parametrize("training", [True, False])
def test_predict_probs_returns_sigmoid_and_restores_mode(training):
    model = _Scale().train(training)
    loader = DataLoader(TensorDataset(X, Y), batch_size=3)
    probs, targets = predict_probs(model, loader)
    torch.testing.assert_close(probs, torch.sigmoid(2 * X))
    torch.testing.assert_close(targets, Y)
    assert model.training is training
    # Eval mode was used: running statistics were not updated by the prediction pass.
    assert model.norm.num_batches_tracked.item() == 0


def test_run_model_applies_forward_and_per_batch_and_returns_ordinary_tensors():
    model = _Scale().train()
    loader = DataLoader(TensorDataset(X, Y), batch_size=3)
    features, targets = run_model(model, loader, forward=lambda x: model(x)[:, :2])
    torch.testing.assert_close(features, 2 * X[:, :2])
    assert not features.is_inference() and not features.requires_grad
    out, _ = run_model(model, loader, per_batch=lambda z: z.half())
    assert out.dtype == torch.float32  # gathered in float32 whatever a batch gives
    head = torch.nn.Linear(2, 1)
    head(features).sum().backward()  # a head can be trained on the outputs
    assert head.weight.grad is not None
    assert model.training


def test_run_model_takes_inputs_only_batches():
    model = _Scale()
    out, targets = run_model(model, DataLoader(TensorDataset(X), batch_size=2))
    torch.testing.assert_close(out, 2 * X)
    assert targets is None
    out, targets = run_model(model, [X[:2], X[2:]])  # plain tensors
    torch.testing.assert_close(out, 2 * X)
    with pytest.raises(ValueError, match="carry no targets"):
        predict_probs(model, [X])


def test_run_model_restores_the_mode_when_a_batch_fails():
    model = _Scale().train()

    def broken(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_model(model, [X], forward=broken)
    assert model.training


def test_run_model_refuses_what_it_cannot_run():
    model = _Scale()
    with pytest.raises(ValueError, match="empty"):
        run_model(model, [])
    with pytest.raises(ValueError, match=r"got a tuple of 3 items"):
        run_model(model, [(X, Y, Y)])
    with pytest.raises(ValueError, match="some batches carry targets"):
        run_model(model, [(X, Y), X])


def test_evaluate_loss_and_map_scores_the_loaders_batches_and_restores_the_mode():
    """The loss is the batch-size-weighted mean of per-batch losses over the loader's own
    batches (a batch sampler included), as before run_model; the model stays training."""
    from torch.utils.data import BatchSampler, SequentialSampler

    from helpers.metrics import mean_average_precision
    from helpers.train import evaluate_loss_and_map

    model = _Scale().train()
    data = TensorDataset(X, Y.float())
    sampler = BatchSampler(SequentialSampler(data), batch_size=3, drop_last=False)
    loader = DataLoader(data, batch_size=None, sampler=sampler)  # loader.batch_size is None
    summed = torch.nn.BCEWithLogitsLoss(reduction="sum")  # depends on the batches
    loss, mAP = evaluate_loss_and_map(model, loader, summed, torch.device("cpu"))
    logits = 2 * X
    expected = (summed(logits[:3], Y[:3].float()) * 3 + summed(logits[3:], Y[3:].float())) / 4
    assert loss == pytest.approx(expected.item())
    assert mAP == pytest.approx(mean_average_precision(torch.sigmoid(logits), Y))
    assert model.training
