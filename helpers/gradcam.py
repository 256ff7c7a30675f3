"""Grad-CAM: which parts of an image raised one label's score?

Grad-CAM (Selvaraju et al., 2017) takes the feature maps ``A_k`` of a late conv layer and
the gradient of one label's logit with respect to them. Each map gets a weight, the mean
of its gradient over positions; the heat map is ``ReLU(sum_k weight_k * A_k)``. For a
network that ends in conv features -> global average pooling -> linear, the weights are
the linear layer's weights divided by the number of positions, so Grad-CAM is CAM (Zhou
et al., 2016) up to that constant: the tests check exactly this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "grad_cam",
]


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    image: torch.Tensor,
    labels: list[int],
    upsample: bool = True,
) -> torch.Tensor:
    """Heat maps (len(labels), H, W) for one image (C, H, W), each scaled to max 1.

    Hooks on `layer` keep its output and the gradient flowing back into it; one forward
    pass and one backward pass per label. The model is put in eval mode (batch norm uses
    its running statistics) and back in the mode it came in. A map that is zero
    everywhere (nothing raised the score) stays zero.
    """
    if len(labels) == 0:
        raise ValueError("labels is empty: name at least one label to explain")
    kept: dict[str, torch.Tensor] = {}

    def keep_output(_module, _inputs, output):
        kept["activations"] = output
        output.register_hook(lambda grad: kept.__setitem__("gradients", grad))

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(keep_output)
    maps = []
    try:
        x = image.unsqueeze(0).requires_grad_(False)
        with torch.enable_grad():
            logits = model(x)
            _check_labels(labels, logits.shape[1])
            for j, label in enumerate(labels):
                model.zero_grad(set_to_none=True)
                logits[0, label].backward(retain_graph=j < len(labels) - 1)
                a, g = kept["activations"][0].detach(), kept["gradients"][0]
                weights = g.mean(dim=(1, 2))  # one weight per feature map
                maps.append(F.relu((weights[:, None, None] * a).sum(0)))
    finally:
        handle.remove()
        model.train(was_training)
    cams = torch.stack(maps)
    if upsample:
        cams = F.interpolate(cams[:, None], size=image.shape[-2:], mode="bilinear")[:, 0]
    peak = cams.flatten(1).amax(1).clamp_min(1e-12)
    return (cams / peak[:, None, None]).detach()


def _check_labels(labels: list[int], n_labels: int) -> None:
    """Refuse a label index the model does not have (-1 would silently be the last one)."""
    bad = [label for label in labels if not 0 <= label < n_labels]
    if bad:
        raise ValueError(
            f"label {bad[0]} is not one of the model's {n_labels} outputs (0..{n_labels - 1})"
        )
