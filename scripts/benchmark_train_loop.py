"""How much does `helpers.train.fit` cost over a bare PyTorch loop? Measure it, in one run.

    python scripts/benchmark_train_loop.py --quick          # < 2 minutes on a 2-core CPU
    python scripts/benchmark_train_loop.py --device cuda    # default: cuda, else mps, else cpu

Both loops train the same model from the same initial weights on the same data with the
same optimizer and OneCycle schedule (`helpers.train.make_optimizer`) for the same number
of steps, in fp32, and both validate once per epoch on the same small validation set.
Runs alternate (bare, fit, fit, bare, ...) after one untimed warm-up of each, and the
median of the repeats is reported, so drifting machine load hits both loops alike.
The ratio is fit's time over the bare loop's: 1.00 means fit costs nothing extra.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader

from helpers.data import MultiDigitConfig, make_multi_digit
from helpers.env import pick_device
from helpers.metrics import mean_average_precision
from helpers.models import SmallCNN
from helpers.speed import time_side_by_side
from helpers.train import TrainConfig, fit, make_optimizer


def bare_loop(model, train_loader, val_loader, config: TrainConfig, device) -> float:
    """The chapter's loop: forward, loss, zero_grad, backward, step; validation per epoch."""
    model.to(device)
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer, scheduler = make_optimizer(model, config, len(train_loader))
    val_map = float("nan")
    for epoch in range(config.epochs):
        torch.manual_seed(config.seed + epoch)  # the same shuffles as fit
        model.train()
        total_loss = 0.0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(y)  # as fit: a running loss for the epoch
        model.eval()
        probs, targets = [], []
        with torch.inference_mode():
            for x, y in val_loader:
                probs.append(torch.sigmoid(model(x.to(device))).float().cpu())
                targets.append(y)
        val_map = mean_average_precision(torch.cat(probs), torch.cat(targets))
    return val_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: < 2 min on a CPU")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: auto)")
    parser.add_argument("--n-train", type=int, default=None, help="training canvases")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop")
    parser.add_argument("--width", type=int, default=16, help="SmallCNN width")
    parser.add_argument("--blocks", type=int, default=4, help="SmallCNN conv blocks")
    args = parser.parse_args()

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    n_train = args.n_train or (512 if args.quick else (20_000 if cuda else 4_096))
    epochs = args.epochs or 2
    batch_size = args.batch_size or (64 if args.quick else 128)

    splits = make_multi_digit(MultiDigitConfig(n_train=n_train, n_val=256, n_test=1))
    # the loader's own shuffling is seeded per epoch by both loops (global generator)
    train_loader = DataLoader(
        splits["train"], batch_size=batch_size, shuffle=True, pin_memory=cuda, drop_last=True
    )
    val_loader = DataLoader(splits["val"], batch_size=256, pin_memory=cuda)
    config = TrainConfig(epochs=epochs, amp=False, progress=False)  # fp32 in both loops
    images = epochs * len(train_loader) * batch_size

    def new_model() -> nn.Module:
        torch.manual_seed(0)
        return SmallCNN(width=args.width, blocks=args.blocks)

    runs = {
        "bare loop": lambda: bare_loop(new_model(), train_loader, val_loader, config, device),
        "helpers.train.fit": lambda: fit(
            new_model(), train_loader, val_loader, nn.BCEWithLogitsLoss(), config, device
        ),
    }
    print(
        f"device {device.type}, SmallCNN(width={args.width}, blocks={args.blocks}), "
        f"{epochs} epochs x {len(train_loader)} steps x batch {batch_size}, fp32, "
        f"{args.repeats} timed repeats each",
        flush=True,
    )
    medians = time_side_by_side(runs, args.repeats, device)
    for name, t in medians.items():
        print(f"{name:>18}: {images / t:.0f} img/s (median of {args.repeats})")
    ratio = medians["helpers.train.fit"] / medians["bare loop"]
    print(f"time ratio fit / bare loop: {ratio:.3f}x (goal <= 1.05x)")


if __name__ == "__main__":
    main()
