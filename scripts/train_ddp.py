"""Train SmallCNN on multi-digit canvases with helpers.train.fit, in one process or several.

One process (any device):

    python scripts/train_ddp.py --epochs 3

Two processes on one machine (gloo between CPU processes, NCCL between GPUs):

    python -m torch.distributed.run --standalone --nproc_per_node=2 scripts/train_ddp.py

On a machine with 8 GPUs use ``--nproc_per_node=8`` (one process per GPU). torchrun starts
the copies and tells each its rank; helpers.distributed reads that, and `fit` wraps the model
in DistributedDataParallel. Only rank 0 prints and writes files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from helpers import distributed
from helpers.data import MultiDigit, MultiDigitConfig, make_multi_digit
from helpers.env import seed_everything
from helpers.models import SmallCNN
from helpers.train import TrainConfig, fit


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=3e-3, help="peak OneCycle learning rate")
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--n-val", type=int, default=2_000)
    p.add_argument(
        "--data",
        help="canvases saved with torch.save: {split: {images, targets, counts, source}}, "
        "read instead of building --n-train/--n-val canvases",
    )
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-amp", action="store_true", help="train in float32")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm (GPUs only)")
    p.add_argument("--checkpoint", help="written by rank 0 after every epoch; resumed from")
    p.add_argument("--summary", help="JSON file (rank 0) with the history and timings")
    p.add_argument("--crash-in-epoch", type=int, help="simulate a crash in this epoch")
    return p.parse_args()


class CrashIn:
    """The batches of `loader`, but every rank raises at the third batch of epoch `epoch`."""

    def __init__(self, loader, epoch: int):
        self.loader, self.epoch, self.passes = loader, epoch, 0
        self.sampler = loader.sampler  # fit calls sampler.set_epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.passes += 1
        for i, batch in enumerate(self.loader):
            if self.sampler.epoch + 1 == self.epoch and i == 2:
                raise RuntimeError(f"simulated crash in epoch {self.epoch}, batch 3")
            yield batch


def say(*text) -> None:
    """Print on rank 0 only: N processes printing the same line N times helps nobody."""
    if distributed.is_main():
        print(*text, flush=True)


def load_splits(args: argparse.Namespace) -> dict[str, MultiDigit]:
    """The same canvases on every rank: read from --data, or built from the same seed."""
    if args.data:
        saved = torch.load(args.data, weights_only=True)
        return {name: MultiDigit(**fields) for name, fields in saved.items()}
    config = MultiDigitConfig(n_train=args.n_train, n_val=args.n_val, n_test=0)
    return make_multi_digit(config)


def train(args: argparse.Namespace, device: torch.device) -> tuple[pd.DataFrame, float] | None:
    """Loaders that share out the data, the model, `fit`: the history and fit's seconds.

    None when the simulated crash (--crash-in-epoch) stopped the run.
    """
    world = distributed.world_size()
    splits = load_splits(args)  # every rank the same data set; the sampler splits it
    train_loader, val_loader = distributed.make_loaders(
        splits["train"],
        splits["val"],
        args.batch_size,
        seed=args.seed,
        val_batch_size=512,
        pin_memory=device.type == "cuda",
    )
    say(
        f"per-process batch {args.batch_size}, global batch {args.batch_size * world}, "
        f"lr {args.lr:g}, {len(train_loader)} steps per epoch\neach process reads "
        f"{len(train_loader.sampler):,} of {len(splits['train']):,} training canvases"
    )

    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP copies rank 0's)
    model = SmallCNN(width=args.width, blocks=args.blocks)
    if args.sync_bn:  # GPUs only: checked in main
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_config = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        amp=not args.no_amp,
        channels_last=True,
        progress=False,
        seed=args.seed,
        checkpoint=args.checkpoint,
    )
    if args.checkpoint and Path(args.checkpoint).exists():
        say(f"resuming from {args.checkpoint}")
    if args.crash_in_epoch:
        train_loader = CrashIn(train_loader, args.crash_in_epoch)

    start = time.perf_counter()
    try:
        history = fit(model, train_loader, val_loader, nn.BCEWithLogitsLoss(), train_config, device)
    except RuntimeError as err:
        if "simulated crash" not in str(err):
            raise
        say(f"{err}: every process stops\n{args.checkpoint} keeps the last finished epoch")
        return None
    return history, time.perf_counter() - start


def main() -> int:
    args = parse_args()
    device = distributed.init_from_env()  # joins torchrun's process group, if any
    if args.sync_bn and device.type != "cuda":
        raise SystemExit("--sync-bn needs GPUs: PyTorch's SyncBatchNorm does not run on CPU")
    seed_everything(args.seed)
    world = distributed.world_size()
    backend = torch.distributed.get_backend() if world > 1 else "none"
    say(
        f"{world} process(es), backend {backend}, device {device.type}, "
        f"{torch.get_num_threads()} thread(s) each"
    )

    result = train(args, device)
    if result is None:  # the simulated crash: every rank stopped
        distributed.cleanup()
        return 3
    history, seconds = result

    say(history.drop(columns=["seconds", "img_per_s"]).round(4).to_string())
    img_per_s = history["img_per_s"].mean()
    say(f"fit took {seconds:.1f} s; training speed {img_per_s:.0f} img/s (all processes together)")
    if args.summary and distributed.is_main():
        summary = {
            "world_size": world,
            "threads": torch.get_num_threads(),
            "global_batch": args.batch_size * world,
            "lr": args.lr,
            "fit_seconds": seconds,
            "img_per_s": img_per_s,
            "history": history.reset_index().to_dict(orient="records"),
        }
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(json.dumps(summary, indent=1))
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
