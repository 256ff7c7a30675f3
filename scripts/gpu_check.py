"""Every CUDA code path the book relies on, exercised in a few minutes on synthetic data.

Run it whenever a machine with a CUDA GPU is at hand (no internet needed):

    python scripts/gpu_check.py                 # prints one table, writes it as JSON
    python scripts/gpu_check.py --json out.json

Each row is one check: ``ok``, ``FAIL`` (the exit status is then 1) or ``skipped`` (with the
reason). Without a CUDA device every row is skipped and the exit status is 0, so the script
is safe to run anywhere; the unit tests run it that way (tests/test_gpu_check.py).

What it checks, and why the book needs it:

- ``fp16 autocast + GradScaler``: the T4 path of ``helpers.train.fit`` (``amp_settings``);
- ``skipped step + LR schedule``: a step whose gradients are not finite is skipped by the
  GradScaler; the weights must not move, the scale must drop, and the row records what the
  OneCycle schedule does then (``fit`` steps it anyway: the schedule moves on one step, and
  torch warns "Detected call of `lr_scheduler.step()` before `optimizer.step()`" when the
  very first step is the skipped one);
- ``bf16 autocast``: the Ampere-and-later path (skipped on GPUs without native bf16);
- ``channels_last``: the GPU preset's memory format gives the same outputs as NCHW;
- ``pinned memory + non_blocking``: the DataLoader's pinned batches arrive intact;
- ``EMA in fit``: ``TrainConfig(ema_decay=...)`` trains and validates on the GPU;
- ``fit under torchrun (NCCL)``: one process, NCCL backend, DDP inside ``fit``;
- ``chapter 8 GPU preset``: ``helpers.voc.GPU_PRESET`` (ResNet-50, 448 px, its workers)
  for a few hundred steps on synthetic JPEGs in VOC layout: images/s, the share of time
  waiting for data (``helpers.speed``), peak GPU memory;
- ``fit / bare loop``: the two benchmark scripts' ratios, measured on the GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent  # scripts/ in the repository, helpers/scripts/ installed
STATUSES = ("ok", "FAIL", "skipped")


@dataclass
class Row:
    """One check's result: status, a one-line detail and the numbers measured."""

    check: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)


class Skip(Exception):
    """Raised by a check that does not apply on this machine (the message says why)."""


# ---------------------------------------------------------------------------- small pieces


def tiny_convnet(n_labels: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, n_labels),
    )  # fmt: skip


def synthetic_set(n: int, size: int = 32, n_labels: int = 5, seed: int = 0) -> TensorDataset:
    """Images whose labels are learnable: label k is on when channel k % 3 is bright."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, n_labels, generator=g) < 0.4).float()
    x = torch.randn(n, 3, size, size, generator=g) * 0.5
    for k in range(n_labels):
        x[:, k % 3] += y[:, k, None, None] * (k + 1) / n_labels
    return TensorDataset(x, y)


def train_steps(model, data, device, steps, dtype, scaler, channels_last=False) -> list[float]:
    """A bare autocast loop; returns the losses (the book's loop, without fit's extras)."""
    from helpers.train import TrainConfig, make_optimizer

    optimizer, _ = make_optimizer(model, TrainConfig(epochs=1, lr=3e-3), steps)
    loader = DataLoader(data, batch_size=64, shuffle=True, drop_last=True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt).train()
    losses = []
    while len(losses) < steps:
        for x, y in loader:
            x, y = x.to(device, memory_format=fmt), y.to(device)
            with torch.autocast(device.type, dtype=dtype):
                loss = nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return losses


def learned(losses: list[float]) -> tuple[bool, str]:
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    ok = bool(torch.isfinite(torch.tensor(losses)).all()) and last < first
    return ok, f"loss {first:.3f} -> {last:.3f} over {len(losses)} steps"


# ---------------------------------------------------------------------------- the checks


def check_fp16_gradscaler(device: torch.device) -> Row:
    scaler = torch.amp.GradScaler(device.type)
    losses = train_steps(tiny_convnet(), synthetic_set(1024), device, 60, torch.float16, scaler)
    ok, detail = learned(losses)
    return Row("fp16 autocast + GradScaler", "ok" if ok else "FAIL",
               f"{detail}; final loss scale {scaler.get_scale():.0f}",
               metrics={"first_loss": losses[0], "last_loss": losses[-1],
                        "loss_scale": scaler.get_scale()})  # fmt: skip


def check_skipped_step(device: torch.device) -> Row:
    """Step 1 gets non-finite gradients on purpose: the scaler must skip it, the weights must
    stay put, the scale must drop; the OneCycle schedule (stepped as fit steps it) moves on."""
    from helpers.train import TrainConfig, make_optimizer

    model = tiny_convnet().to(device)
    config = TrainConfig(epochs=1, lr=3e-3)
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch=10)
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**16)
    x, y = synthetic_set(64).tensors
    x, y = x.to(device), y.to(device)
    before = [p.detach().clone() for p in model.parameters()]
    lrs, scales, moved = [scheduler.get_last_lr()[0]], [scaler.get_scale()], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
            if step == 0:
                loss = loss * float("inf")  # an overflow, as fp16 gradients can have
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()  # as fit does: once per batch, skipped or not
            if step == 0:
                moved.append(
                    any(
                        not torch.equal(b, p)
                        for b, p in zip(before, model.parameters(), strict=True)
                    )
                )
            lrs.append(scheduler.get_last_lr()[0])
            scales.append(scaler.get_scale())
    warned = any("lr_scheduler.step()" in str(w.message) for w in caught)
    skipped_ok = not moved[0] and scales[1] < scales[0]
    detail = (
        f"step 1 skipped: weights {'MOVED' if moved[0] else 'unchanged'}, scale "
        f"{scales[0]:.0f} -> {scales[1]:.0f}; OneCycle advanced anyway (lr {lrs[0]:.2e} -> "
        f"{lrs[1]:.2e}); torch warned 'lr_scheduler.step() before optimizer.step()': "
        f"{'yes' if warned else 'no'}"
    )
    return Row("skipped step + LR schedule", "ok" if skipped_ok else "FAIL", detail,
               metrics={"weights_moved_on_skip": moved[0], "scales": scales, "lrs": lrs,
                        "scheduler_warning": warned})  # fmt: skip


def check_bf16(device: torch.device) -> Row:
    from helpers.train import amp_settings

    dtype, _ = amp_settings(device)
    if dtype != torch.bfloat16:
        major, minor = torch.cuda.get_device_capability(device)
        raise Skip(f"no native bf16 (compute capability {major}.{minor}): fit uses fp16 here")
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    losses = train_steps(tiny_convnet(), synthetic_set(1024), device, 60, torch.bfloat16, scaler)
    ok, detail = learned(losses)
    return Row("bf16 autocast", "ok" if ok else "FAIL", detail,
               metrics={"first_loss": losses[0], "last_loss": losses[-1]})  # fmt: skip


def check_channels_last(device: torch.device) -> Row:
    from helpers.models import resnet_multilabel

    torch.manual_seed(0)
    model = resnet_multilabel("resnet18", 20, weights=None).to(device).eval()
    x = torch.randn(8, 3, 224, 224, device=device)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # compare fp32 with fp32, not TF32 roundings
    try:
        with torch.no_grad():
            reference = model(x)
            model.to(memory_format=torch.channels_last)
            out = model(x.to(memory_format=torch.channels_last))
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    diff = ((out - reference).abs().max() / reference.abs().max()).item()
    is_cl = model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    ok = is_cl and diff < 1e-3
    return Row("channels_last", "ok" if ok else "FAIL",
               f"weights channels_last: {is_cl}; max |NHWC - NCHW| / max |NCHW| {diff:.1e} "
               "(fp32, TF32 off)",
               metrics={"max_rel_diff": diff, "weights_channels_last": is_cl})  # fmt: skip


def check_pinned_non_blocking(device: torch.device) -> Row:
    data = synthetic_set(512, size=64)
    loader = DataLoader(data, batch_size=64, pin_memory=True, num_workers=2)
    pinned, equal = [], []
    for x, y in loader:
        pinned.append(x.is_pinned() and y.is_pinned())
        xd, yd = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        torch.cuda.synchronize(device)
        equal.append(torch.equal(xd.cpu(), x) and torch.equal(yd.cpu(), y))
    ok = all(pinned) and all(equal)
    return Row("pinned memory + non_blocking", "ok" if ok else "FAIL",
               f"{sum(pinned)}/{len(pinned)} batches pinned, {sum(equal)}/{len(equal)} "
               "arrived intact", metrics={"batches": len(pinned)})  # fmt: skip


def check_ema_fit(device: torch.device) -> Row:
    from helpers.train import TrainConfig, fit

    train, val = synthetic_set(1024), synthetic_set(256, seed=1)
    config = TrainConfig(epochs=2, lr=3e-3, progress=False, ema_decay=0.9)
    train_loader = DataLoader(train, batch_size=64, shuffle=True)
    val_loader = DataLoader(val, batch_size=128)
    history = fit(tiny_convnet(), train_loader, val_loader, nn.BCEWithLogitsLoss(), config, device)
    last = history.iloc[-1]
    ok = bool(torch.isfinite(torch.tensor(history[["train_loss", "val_loss"]].to_numpy())).all())
    return Row("EMA in fit", "ok" if ok else "FAIL",
               f"2 epochs; val mAP {last['val_mAP']:.3f} (EMA weights), val loss "
               f"{last['val_loss']:.3f}", metrics={"val_mAP": float(last["val_mAP"])})  # fmt: skip


def ddp_worker() -> None:
    """Run by torchrun (one process): fit with NCCL; print one JSON line for the parent."""
    import torch.distributed as dist

    from helpers import distributed
    from helpers.train import TrainConfig, fit

    device = distributed.init_from_env()
    train, val = synthetic_set(512), synthetic_set(128, seed=1)
    sampler = torch.utils.data.DistributedSampler(train, shuffle=True, seed=0)
    history = fit(tiny_convnet(), DataLoader(train, batch_size=64, sampler=sampler),
                  DataLoader(val, batch_size=128), nn.BCEWithLogitsLoss(),
                  TrainConfig(epochs=2, progress=False), device)  # fmt: skip
    result = {"backend": dist.get_backend(), "world_size": dist.get_world_size(),
              "device": str(device), "val_mAP": float(history["val_mAP"].iloc[-1])}  # fmt: skip
    distributed.cleanup()
    print("GPU_CHECK_DDP " + json.dumps(result), flush=True)


def check_torchrun_nccl(device: torch.device) -> Row:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=1", str(Path(__file__).resolve()), "--ddp-worker"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    found = re.search(r"GPU_CHECK_DDP (\{.*\})", result.stdout)
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return Row("fit under torchrun (NCCL)", "FAIL",
                   f"exit {result.returncode}: {' | '.join(tail)}")  # fmt: skip
    info = json.loads(found.group(1))
    ok = info["backend"] == "nccl" and info["world_size"] == 1
    return Row("fit under torchrun (NCCL)", "ok" if ok else "FAIL",
               f"backend {info['backend']}, world size {info['world_size']}, "
               f"{info['device']}, val mAP {info['val_mAP']:.3f}", metrics=info)  # fmt: skip


def write_synthetic_voc(root: Path, n: int, seed: int = 0) -> None:
    """n random 500x375 JPEGs with VOC annotations (the size of a typical VOC image)."""
    import numpy as np
    from PIL import Image

    from helpers.voc import VOC_CLASSES
    from helpers.voc_layout import write_split, write_voc_image

    rng = np.random.default_rng(seed)
    ids = [f"{i:06d}" for i in range(n)]
    for image_id in ids:
        # smooth colour blobs plus mild noise: JPEGs about as costly to decode as photos
        blobs = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        smooth = np.asarray(blobs.resize((500, 375), Image.BILINEAR), dtype=np.int16)
        noise = rng.integers(-12, 13, smooth.shape, dtype=np.int16)
        pixels = np.clip(smooth + noise, 0, 255).astype(np.uint8)
        names = rng.choice(VOC_CLASSES, size=rng.integers(1, 4), replace=False)
        write_voc_image(root, image_id, pixels, [{"name": str(c)} for c in names])
    write_split(root, "trainval", ids)
    write_split(root, "test", ids[: n // 4])


def check_voc_gpu_preset(device: torch.device, steps: int) -> Row:
    from helpers.models import resnet_multilabel
    from helpers.speed import DataWaitMeter, speed_report
    from helpers.train import fit
    from helpers.voc_training import GPU_PRESET, make_loader, prepare_splits, train_config

    preset = GPU_PRESET
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_voc(Path(tmp), 400)
        splits = prepare_splits(tmp, preset)
        repeats = -(-steps * preset.batch_size // len(splits["train"]))  # ceil
        train_set = ConcatDataset([splits["train"]] * repeats)
        loader = make_loader(train_set, preset, device, train=True)
        meter = DataWaitMeter(loader)
        val_loader = make_loader(splits["val"], preset, device, train=False)
        model = resnet_multilabel(preset.arch, 20, weights=None, pool=preset.pool)
        torch.cuda.reset_peak_memory_stats(device)
        history = fit(model, meter, val_loader, nn.BCEWithLogitsLoss(),
                      train_config(preset, epochs=1), device)  # fmt: skip
        report = speed_report(meter, float(history["seconds"].sum()))
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    ok = bool(torch.isfinite(torch.tensor(history["train_loss"].to_numpy())).all())
    return Row(
        "chapter 8 GPU preset", "ok" if ok else "FAIL",
        f"{preset.arch} {preset.size} px, batch {preset.batch_size}, {len(loader)} steps, "
        f"{loader.num_workers} workers: {report.images_per_s:.0f} img/s, "
        f"{report.data_wait_fraction:.0%} waiting for data, peak memory {peak_gib:.1f} GiB",
        metrics={"images_per_s": report.images_per_s, "steps": len(loader),
                 "data_wait_fraction": report.data_wait_fraction, "peak_memory_gib": peak_gib,
                 "workers": loader.num_workers, "size": preset.size,
                 "batch_size": preset.batch_size},
    )  # fmt: skip


def benchmark_ratio(name: str, script: str, args: list[str]) -> Row:
    result = subprocess.run([sys.executable, str(HERE / script), "--device", "cuda", *args],
                            capture_output=True, text=True, timeout=240)  # fmt: skip
    found = re.search(r"fit / bare loop: ([0-9.]+)", result.stdout)
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return Row(name, "FAIL", f"{script} exit {result.returncode}: {' | '.join(tail)}")
    ratio = float(found.group(1))
    speeds = re.findall(r"(bare loop|helpers\.train\.fit): ([0-9.]+) img/s", result.stdout)
    return Row(name, "ok", f"time ratio fit / bare loop {ratio:.3f} ({script} {' '.join(args)})",
               metrics={"ratio": ratio, **{k: float(v) for k, v in speeds}})  # fmt: skip


# ---------------------------------------------------------------------------- running, output


def checks(steps: int) -> list[tuple[str, Callable[[torch.device], Row]]]:
    return [
        ("fp16 autocast + GradScaler", check_fp16_gradscaler),
        ("skipped step + LR schedule", check_skipped_step),
        ("bf16 autocast", check_bf16),
        ("channels_last", check_channels_last),
        ("pinned memory + non_blocking", check_pinned_non_blocking),
        ("EMA in fit", check_ema_fit),
        ("fit under torchrun (NCCL)", check_torchrun_nccl),
        ("chapter 8 GPU preset", lambda d: check_voc_gpu_preset(d, steps)),
        ("fit / bare loop (VOC step)", lambda d: benchmark_ratio(
            "fit / bare loop (VOC step)", "benchmark_voc_step.py", ["--steps", "20"])),
        ("fit / bare loop (digits)", lambda d: benchmark_ratio(
            "fit / bare loop (digits)", "benchmark_train_loop.py", ["--quick"])),
    ]  # fmt: skip


def run_checks(
    todo: list[tuple[str, Callable[[torch.device], Row]]], device: torch.device | None
) -> list[Row]:
    """Run each check; a check that raises fails (its row says why) and the others go on."""
    rows = []
    for name, check in todo:
        if device is None:
            rows.append(Row(name, "skipped", "no CUDA device"))
            continue
        start = time.perf_counter()
        try:
            row = check(device)
        except Skip as why:
            row = Row(name, "skipped", str(why))
        except Exception as err:  # noqa: BLE001 - one failing check must not hide the others
            row = Row(name, "FAIL", f"{type(err).__name__}: {err}"[:300])
        row.check, row.seconds = name, time.perf_counter() - start
        rows.append(row)
        print(f"  {row.status:<7} {name} ({row.seconds:.0f} s)", flush=True)
    return rows


def environment(device: torch.device | None) -> dict:
    info = {
        "gpu": torch.cuda.get_device_name(device) if device is not None else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }
    if device is not None:
        info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info


def format_table(rows: list[Row]) -> str:
    """A plain-text table: one line per check, status first, details unwrapped."""
    header = ("check", "status", "seconds", "detail")
    lines = [(r.check, r.status, f"{r.seconds:.0f}", r.detail) for r in rows]
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(3)]
    fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:>{widths[2]}}}  {{}}"
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths), "-" * 6)]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def to_json(rows: list[Row], env: dict) -> dict:
    for row in rows:
        if row.status not in STATUSES:
            raise ValueError(f"{row.check}: unknown status {row.status!r}")
    return {"environment": env, "rows": [asdict(r) for r in rows],
            "failed": [r.check for r in rows if r.status == "FAIL"]}  # fmt: skip


def exit_status(rows: list[Row]) -> int:
    return 1 if any(r.status == "FAIL" for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json",
        default=None,
        help="where to write the table as JSON "
        "(default: gpu_check.json in helpers.data.generated_dir('gpu_check'))",
    )
    parser.add_argument("--steps", type=int, default=300, help="steps of the GPU-preset run")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        ddp_worker()
        return 0

    device = torch.device("cuda") if torch.cuda.is_available() else None
    env = environment(device)
    print(f"GPU check: {env['gpu'] or 'no CUDA device: every check skipped'}; torch "
          f"{env['torch']}, CUDA {env['cuda']}", flush=True)  # fmt: skip
    rows = run_checks(checks(args.steps), device)
    print()
    print(format_table(rows))
    if args.json:
        out = Path(args.json)
    else:
        from helpers.data import generated_dir

        out = generated_dir("gpu_check") / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_json(rows, env), indent=2) + "\n")
    print(f"\nwritten: {out}")
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(main())
