"""Chapter 4's recipe against the one it replaced: training time to val mAP 0.99, in one run.

    python scripts/benchmark_recipe.py            # a few minutes on one CPU core
    python scripts/benchmark_recipe.py --only new --set lr=1e-2   # try a variant

Both recipes train `SmallCNN` on chapter 4's task (`MultiDigitConfig()`'s 64-px canvases,
its 2,000 validation and 2,000 test canvases) with `helpers.train.make_optimizer` (AdamW
and OneCycle over the whole run), in fp32, from the same seed. Every `--eval-every` training
images the clock stops and the validation mAP is measured; the time to 0.99 is the training
CPU time (``time.process_time``, one thread) up to the first evaluation at or above 0.99.
The old recipe stops there; the new one finishes its schedule and reports its test mAP.
It sets the book's kernel pins (single thread, AVX2 kernels) unless they are already set,
so it measures what the chapters run.
"""

from __future__ import annotations

import argparse
import os
import time

from helpers.pins import PINNED_ENV  # imports nothing: safe before torch

for _name, _value in PINNED_ENV.items():  # the libraries read them when torch loads
    os.environ.setdefault(_name, _value)

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import BatchSampler, DataLoader, RandomSampler  # noqa: E402

from helpers.data import MultiDigitConfig, digit_source, make_multi_digit  # noqa: E402
from helpers.inference import run_model  # noqa: E402
from helpers.metrics import mean_average_precision  # noqa: E402
from helpers.models import SmallCNN  # noqa: E402
from helpers.train import TrainConfig, make_optimizer  # noqa: E402

RECIPES = {
    # chapter 4 before issue 16: 3 epochs of 20,000 canvases in batches of 128
    "old": dict(
        n_train=20_000,
        width=16,
        blocks=4,
        batch_size=128,
        lr=3e-3,
        epochs=3,
        channels_last=True,
    ),
    # chapter 4 now
    "new": dict(
        n_train=24_000,
        width=8,
        blocks=5,
        batch_size=32,
        lr=5e-3,
        epochs=1,
        channels_last=True,
    ),
}
TARGET = 0.99


def batch_loader(split, batch_size: int) -> DataLoader:
    """Whole batches sliced from the split's uint8 tensors (no per-canvas collation).

    Shuffled from torch's global generator, which `fit` seeds per epoch.
    """
    sampler = BatchSampler(RandomSampler(split), batch_size, drop_last=False)
    return DataLoader(split, batch_size=None, sampler=sampler)


def val_map(model, loader, channels_last: bool) -> float:
    def forward(x):
        return model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)

    probs, targets = run_model(model, loader, forward=forward, per_batch=torch.sigmoid)
    return mean_average_precision(probs, targets)


def build(recipe: dict, config: TrainConfig, steps_per_epoch: int):
    """The recipe's model (seeded, in its memory format), optimizer and schedule."""
    torch.manual_seed(0)
    model = SmallCNN(width=recipe["width"], blocks=recipe["blocks"])
    if recipe["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return (model, *make_optimizer(model, config, steps_per_epoch))


def run(name: str, recipe: dict, splits: dict, eval_every: int, finish: bool) -> dict:
    """Train one recipe; CPU seconds to TARGET (None if never) and the final mAPs."""
    train = splits[recipe["n_train"]]["train"]
    val = batch_loader(splits[recipe["n_train"]]["val"], 1_000)
    test = batch_loader(splits[recipe["n_train"]]["test"], 1_000)
    loader = batch_loader(train, recipe["batch_size"])
    config = TrainConfig(epochs=recipe["epochs"], lr=recipe["lr"], amp=False, progress=False)
    model, optimizer, scheduler = build(recipe, config, len(loader))
    cl = recipe["channels_last"]
    loss_fn = nn.BCEWithLogitsLoss()
    clock, seen, next_eval, reached, maps = 0.0, 0, eval_every, None, []
    model.train()
    for epoch in range(config.epochs):
        torch.manual_seed(config.seed + epoch)  # as fit
        start = time.process_time()
        for x, y in loader:
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(y)
            last = seen == config.epochs * len(train)
            if seen >= next_eval or last:
                clock += time.process_time() - start  # the clock stops for validation
                next_eval += eval_every
                if reached is None:
                    maps.append((seen, clock, val_map(model, val, cl)))
                    print(
                        f"  {name}: {seen:>6,} images, {clock:6.1f} s, val mAP {maps[-1][2]:.4f}",
                        flush=True,
                    )
                    if maps[-1][2] >= TARGET:
                        reached = clock
                        if not finish:
                            return {"seconds": reached, "images": seen}
                start = time.process_time()
        clock += time.process_time() - start
    return {
        "seconds": reached,
        "images": seen,
        "train_seconds": clock,
        "val_mAP": val_map(model, val, cl),
        "test_mAP": val_map(model, test, cl),
    }


def describe(recipe: dict) -> str:
    return (
        f"SmallCNN(width={recipe['width']}, blocks={recipe['blocks']}), "
        f"{recipe['n_train']:,} canvases x {recipe['epochs']} epoch(s), "
        f"batch {recipe['batch_size']}, OneCycle peak {recipe['lr']:g}, "
        f"channels_last={recipe['channels_last']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eval-every", type=int, default=2_560, help="training images")
    parser.add_argument("--only", choices=sorted(RECIPES), default=None)
    parser.add_argument("--set", nargs="*", default=[], help="key=value for the new recipe")
    args = parser.parse_args()
    for item in args.set:
        key, value = item.split("=")
        kind = type(RECIPES["new"][key])
        RECIPES["new"][key] = value == "True" if kind is bool else kind(float(value))

    torch.set_num_threads(1)
    cpu = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):  # Linux
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if "model name" in line]
        cpu = names[0] if names else cpu
    print(
        f"torch {torch.__version__}, {cpu}, {torch.get_num_threads()} thread, "
        f"kernels {torch.backends.cpu.get_cpu_capability()}, fp32, training time = CPU time",
        flush=True,
    )
    source = digit_source()
    names = [args.only] if args.only else list(RECIPES)
    splits = {}
    for name in names:
        n = RECIPES[name]["n_train"]
        if n not in splits:
            splits[n] = make_multi_digit(MultiDigitConfig(n_train=n), source)
    results = {}
    for name in names:
        print(f"{name}: {describe(RECIPES[name])}", flush=True)
        results[name] = run(name, RECIPES[name], splits, args.eval_every, name == "new")
    for name, result in results.items():
        t = result["seconds"]
        when = "never reached" if t is None else f"after {t:.1f} s of training"
        print(f"{name} recipe: val mAP {TARGET} {when}")
    if "new" in results:
        new = results["new"]
        print(
            f"new recipe, whole run: {new['train_seconds']:.1f} s of training, "
            f"val mAP {new['val_mAP']:.4f}, test mAP {new['test_mAP']:.4f}"
        )
    if len(results) == 2 and None not in (results["old"]["seconds"], new["seconds"]):
        ratio = results["new"]["seconds"] / results["old"]["seconds"]
        print(f"time to val mAP {TARGET}, new / old: {ratio:.2f} (goal <= 0.50)")


if __name__ == "__main__":
    main()
