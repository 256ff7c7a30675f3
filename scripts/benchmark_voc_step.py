"""Chapter 8's training step: `helpers.train.fit` against a bare PyTorch loop, in one run.

    python scripts/benchmark_voc_step.py --quick                  # a short CPU run
    python scripts/benchmark_voc_step.py --quick --fp32 --steps 3 # chapter 8's run
    python scripts/benchmark_voc_step.py                          # GPU preset if CUDA is there
    python scripts/benchmark_voc_step.py --voc data/downloads/voc2007

Both loops train the same ResNet from the same initial weights, with the preset's settings
(mixed precision from `amp_settings` unless --fp32, channels_last, AdamW + OneCycle from
`make_optimizer`, head/backbone learning rates), on the same batches, for the same number of
steps. Data is the VOC folder if given (real JPEG decoding in DataLoader workers), else
synthetic tensors at the preset's resolution (model speed only), and the output says which.
Validation is left out of both (one tiny batch for `fit`). Runs alternate (bare, fit, fit,
bare, ...) after one untimed warm-up of each; medians are reported.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from helpers.env import pick_device
from helpers.models import resnet_multilabel
from helpers.speed import time_side_by_side
from helpers.train import amp_autocast, amp_settings, fit, make_optimizer
from helpers.voc import find_voc
from helpers.voc_training import CPU_PRESET, GPU_PRESET, make_loader, prepare_splits, train_config


def bare_loop(model, loader, config, device) -> None:
    """The chapter-4 loop with the preset's speed settings and nothing else."""
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    amp_dtype, use_scaler = amp_settings(device, config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    optimizer, scheduler = make_optimizer(model, config, len(loader))
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(config.epochs):
        torch.manual_seed(config.seed + epoch)
        model.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if config.channels_last:
                x = x.to(memory_format=torch.channels_last)
            with amp_autocast(device, amp_dtype):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss.item()  # as fit: one sync per step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (resnet18, 32 px)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: auto)")
    parser.add_argument("--voc", default=None, help="a folder in VOC layout (else synthetic)")
    parser.add_argument("--arch", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop")
    parser.add_argument("--fp32", action="store_true", help="no autocast: train in float32")
    return parser.parse_args()


def choose_preset(args: argparse.Namespace, device: torch.device):
    """The device's preset (GPU or CPU), made small by --quick, then the explicit options."""
    preset = GPU_PRESET if device.type == "cuda" else CPU_PRESET
    if args.quick:
        preset = replace(preset, arch="resnet18", size=32, batch_size=16)
    return replace(
        preset,
        arch=args.arch or preset.arch,
        size=args.size or preset.size,
        batch_size=args.batch_size or preset.batch_size,
    )


def training_data(args: argparse.Namespace, preset, n: int) -> tuple[Dataset, int, str]:
    """(data set, number of labels, what the data is): the VOC folder, or `n` synthetic images."""
    voc_root = find_voc(args.voc) if args.voc else None
    if args.voc and voc_root is None:
        raise SystemExit(f"{args.voc} is not a folder in VOC layout")
    if voc_root is not None:
        data = prepare_splits(voc_root, replace(preset, max_train_images=n + n // 4 + 8))
        train_set, n_labels = data["train"], len(data["trainval_all"].classes)
        return (
            train_set,
            n_labels,
            (f"VOC-layout folder {args.voc} ({len(train_set)} training images, JPEG decoding)"),
        )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, preset.size, preset.size, generator=g)
    y = (torch.rand(n, 20, generator=g) < 0.3).float()
    return TensorDataset(x, y), 20, f"synthetic tensors ({n} images, no decoding: model speed only)"


def main() -> None:
    args = parse_args()
    device = pick_device(args.device)
    preset = choose_preset(args, device)
    steps = args.steps or (8 if args.quick else 20)
    train_set, n_labels, source = training_data(args, preset, steps * preset.batch_size)
    if not args.voc:
        preset = replace(preset, workers=0)  # tensors in memory: workers would only add cost
    train_loader = make_loader(train_set, preset, device, train=True)
    val_loader = DataLoader(TensorDataset(*next(iter(train_loader))), batch_size=preset.batch_size)
    config = train_config(preset, epochs=1, **({"amp": False} if args.fp32 else {}))
    images = len(train_loader) * preset.batch_size

    def new_model() -> nn.Module:
        torch.manual_seed(0)
        return resnet_multilabel(preset.arch, n_labels, weights=None, pool=preset.pool)

    runs = {
        "bare loop": lambda: bare_loop(new_model(), train_loader, config, device),
        "helpers.train.fit": lambda: fit(
            new_model(), train_loader, val_loader, nn.BCEWithLogitsLoss(), config, device
        ),
    }
    amp_dtype, scaler = amp_settings(device, config.amp)
    print(
        f"device {device.type}; data: {source}\n"
        f"{preset.arch} at {preset.size} px, batch {preset.batch_size}, {len(train_loader)} steps, "
        f"autocast {amp_dtype}, GradScaler {scaler}, channels_last {config.channels_last}, "
        f"workers {train_loader.num_workers}; {args.repeats} timed repeats each",
        flush=True,
    )
    medians = time_side_by_side(runs, args.repeats, device)
    for name, t in medians.items():
        print(f"{name:>18}: {images / t:.1f} img/s (median of {args.repeats})")
    ratio = medians["helpers.train.fit"] / medians["bare loop"]
    print(f"time ratio fit / bare loop: {ratio:.3f}x (1.00x: fit costs nothing extra)")


if __name__ == "__main__":
    main()
