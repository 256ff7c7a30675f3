"""Grad-CAM against CAM on networks where the two must agree (up to scale)."""

import pytest
import pytorch_grad_cam
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from helpers.gradcam import grad_cam


class ConvGapLinear(nn.Module):
    def __init__(self, n_labels=4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1)
        )
        self.fc = nn.Linear(6, n_labels)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def class_activation_map(features: torch.Tensor, fc: nn.Linear, label: int) -> torch.Tensor:
    """The reference, CAM (Zhou et al. 2016), for one image's features (K, h, w):
    ``ReLU(sum_k w[label, k] * A_k)``, unscaled."""
    return F.relu(torch.einsum("k,khw->hw", fc.weight[label].detach(), features))


def normalised(m):
    return m / m.max().clamp_min(1e-12)


def test_grad_cam_equals_cam_for_gap_linear():
    torch.manual_seed(0)
    model = ConvGapLinear()
    image = torch.randn(3, 10, 12)
    cams = grad_cam(model, model.features, image, [0, 1, 2, 3], upsample=False)
    features = model.features(image[None])[0]
    for label in range(4):
        cam = class_activation_map(features, model.fc, label)
        assert torch.allclose(cams[label], normalised(cam), atol=1e-5)


def test_grad_cam_equals_cam_on_resnet18_layer4():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    model.train()  # grad_cam must evaluate in eval mode and restore training mode
    image = torch.randn(3, 64, 64)
    cams = grad_cam(model, model.layer4, image, [0, 3], upsample=False)
    assert model.training
    model.eval()
    trunk = nn.Sequential(*list(model.children())[:-2])
    with torch.no_grad():
        features = trunk(image[None])[0]
    for i, label in enumerate([0, 3]):
        expected = normalised(class_activation_map(features, model.fc, label))
        assert torch.allclose(cams[i], expected, atol=1e-4)


def test_upsampled_maps_match_the_image_and_hooks_are_removed():
    model = ConvGapLinear()
    image = torch.randn(3, 10, 12)
    cams = grad_cam(model, model.features, image, [1])
    assert cams.shape == (1, 10, 12)
    assert cams.min() >= 0 and cams.max() == pytest.approx(1.0)  # scaled to its peak
    assert not model.features._forward_hooks


def test_grad_cam_matches_the_pytorch_grad_cam_package():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    image = torch.randn(3, 64, 64)
    ours = grad_cam(model, model.layer4, image, [2])[0]
    with pytorch_grad_cam.GradCAM(model=model, target_layers=[model.layer4]) as cam:
        theirs = torch.from_numpy(cam(image[None], targets=[ClassifierOutputTarget(2)])[0])
    # the package rescales min-max after upsampling; compare the normalised maps' ranking
    corr = torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1]
    assert corr > 0.99
