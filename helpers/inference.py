"""Running a model over data: the one place that does it.

Evaluation, prediction, calibration and feature extraction all need the same loop: eval
mode (batch norm uses its running statistics, dropout is off), no gradients, every batch's
output gathered on the CPU, and the model put back in the mode it came in. Written once,
no caller can forget the last step: a model left in eval mode by a mid-training evaluation
would train the rest of the epoch with frozen batch-norm statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["predict_probs", "run_model"]


def _split_batch(batch) -> tuple[torch.Tensor, object]:
    """(inputs, targets or None) of a batch that is x, (x,) or (x, y)."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, list | tuple) and len(batch) in (1, 2):
        return batch[0], (batch[1] if len(batch) == 2 else None)
    raise ValueError(
        f"a batch must be x, (x,) or (x, y); got a {type(batch).__name__}"
        + (f" of {len(batch)} items" if isinstance(batch, list | tuple) else "")
    )


def run_model(
    model: nn.Module,
    batches: Iterable,
    device: torch.device | str = "cpu",
    *,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    per_batch: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(outputs, targets): every batch's output, concatenated in float32 on the CPU, and the
    targets as the batches carry them (on the CPU; None when batches hold inputs only).

    `batches` is a DataLoader or any iterable of ``(x, y)``, ``(x,)`` or ``x``. Each ``x``
    goes to `device`, then through `forward` (default ``model(x)``; pass e.g.
    ``lambda x: net.pool(net.features(x)).flatten(1)`` for backbone features, or a function
    that adds autocast), then through `per_batch` on the device (e.g. ``torch.sigmoid``).
    Runs under ``torch.no_grad()`` with `model` in eval mode, and restores `model`'s mode
    afterwards, also when a batch fails. The outputs are ordinary tensors, not inference
    tensors: a head may be trained on them.
    """
    run = forward if forward is not None else model
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    try:
        with torch.no_grad():
            for batch in batches:
                x, y = _split_batch(batch)
                out = run(x.to(device, non_blocking=True))
                if per_batch is not None:
                    out = per_batch(out)
                outputs.append(out.float().cpu())
                if y is not None:
                    targets.append(torch.as_tensor(y).cpu())
    finally:
        model.train(was_training)
    if not outputs:
        raise ValueError("batches is empty: there is nothing to run the model on")
    if targets and len(targets) != len(outputs):
        raise ValueError("some batches carry targets and some do not; make them all alike")
    return torch.cat(outputs), (torch.cat(targets) if targets else None)


def predict_probs(
    model: nn.Module, loader, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid probabilities (float32) and targets for a whole loader, gathered on the CPU
    (:func:`run_model`: eval mode, no gradients, the model's mode restored)."""
    probs, targets = run_model(model, loader, device, per_batch=torch.sigmoid)
    if targets is None:
        raise ValueError("the loader's batches carry no targets; use run_model for inputs only")
    return probs, targets
