"""make_optimizer's norm_weight_decay (torchvision's option): the default leaves every
parameter decayed as before; a value gives the normalisation layers' parameters their own
weight decay, in each learning-rate group, and the schedule follows every group."""

import torch
from torch import nn

from helpers.train import TrainConfig, make_optimizer


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3)
    ).eval()


def _ids(group: dict) -> set[int]:
    return {id(p) for p in group["params"]}


def test_default_keeps_one_group_per_learning_rate():
    model = _model()
    model(torch.zeros(1, 1, 5, 5))  # materialise the lazy layer
    optimizer, _ = make_optimizer(model, TrainConfig(weight_decay=0.05), steps_per_epoch=1)
    assert len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["weight_decay"] == 0.05
    assert _ids(optimizer.param_groups[0]) == {id(p) for p in model.parameters()}


def test_norm_weight_decay_splits_norm_parameters_in_each_group():
    model = _model()
    model(torch.zeros(1, 1, 5, 5))
    config = TrainConfig(weight_decay=0.05, head="3", backbone_lr_ratio=0.1, lr=1e-3)
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch=1, norm_weight_decay=0.0)
    groups = optimizer.param_groups
    norm = {id(model[1].weight), id(model[1].bias)}
    assert [len(g["params"]) for g in groups] == [2, 2, 2]  # head; conv; batch norm
    assert _ids(groups[0]) == {id(model[3].weight), id(model[3].bias)}
    assert _ids(groups[2]) == norm and groups[2]["weight_decay"] == 0.0
    assert groups[1]["weight_decay"] == 0.05 and not (_ids(groups[1]) & norm)
    # the backbone's norm layers keep the backbone's learning rate under OneCycle
    assert groups[1]["max_lr"] == groups[2]["max_lr"] == 1e-4
    assert scheduler.optimizer is optimizer
