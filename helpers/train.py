"""The training loop later chapters reuse, in pieces a chapter can print whole.

`train_one_epoch` is the loop of chapter 4 (forward, loss, zero_grad, backward, step) plus
what a real run needs: mixed precision where the device supports it, optional
channels_last, a OneCycle learning-rate step per batch, an optional EMA of the weights and a
clear stop when the loss becomes NaN. `evaluate_loss_and_map` validates. `fit` drives the
two, epoch after epoch, and keeps a history table and checkpoints (helpers.checkpoint) that
resume exactly, or refuse to resume a different run.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from helpers import distributed
from helpers.checkpoint import load_checkpoint, non_finite_fields, save_checkpoint
from helpers.env import cpu_native_bf16
from helpers.inference import run_model
from helpers.metrics import mean_average_precision

__all__ = [
    "TrainConfig",
    "amp_autocast",
    "amp_settings",
    "evaluate_loss_and_map",
    "fit",
    "make_optimizer",
    "train_one_epoch",
]

_HISTORY_COLUMNS = ["train_loss", "val_loss", "val_mAP", "lr", "seconds", "img_per_s"]


@dataclass
class TrainConfig:
    """Everything `fit` needs besides the model, the data and the loss."""

    epochs: int = 5
    lr: float = 3e-3
    weight_decay: float = 1e-4
    amp: bool = True  # bf16 autocast where native (CPU, GPU), fp16 + GradScaler on other GPUs
    channels_last: bool = False
    grad_clip: float | None = None
    seed: int = 0
    checkpoint: str | None = None  # path; written after every epoch, resumed from if present
    progress: bool = True  # tqdm bars
    head: str | None = None  # name of the output layer ("fc" in torchvision ResNets) ...
    backbone_lr_ratio: float = 1.0  # ... and every other layer's lr as a fraction of `lr`
    ema_decay: float | None = None  # e.g. 0.999: validate and end with an EMA of the weights


def amp_settings(device: torch.device, enabled: bool = True) -> tuple[torch.dtype | None, bool]:
    """The autocast dtype for `device` (None: no autocast) and whether a GradScaler is needed.

    fp16 gradients can underflow, so fp16 needs loss scaling; bf16 has fp32's range and
    does not. A Colab T4 has fast fp16 but no fast bf16, hence the check. It asks for
    *native* bf16 (compute capability 8.0+, Ampere and later): since PyTorch 2.3
    ``torch.cuda.is_bf16_supported()`` also says True on a T4, where bf16 is only emulated.
    """
    if not enabled:
        return None, False
    if device.type == "cuda":
        native_bf16 = (
            torch.version.hip is not None or torch.cuda.get_device_capability(device)[0] >= 8
        )
        return (torch.bfloat16, False) if native_bf16 else (torch.float16, True)
    if device.type == "cpu":  # bf16 only where the CPU computes it natively (else slower)
        return (torch.bfloat16, False) if cpu_native_bf16() else (None, False)
    return None, False  # MPS and others: full precision


def amp_autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to `dtype` on `device`, or a context that changes nothing (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_NORM_LAYERS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm,
    nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
)  # fmt: skip  # the normalisation layers torchvision's reference scripts single out


def _split_norm(model: nn.Module, params: list, group: dict, norm_weight_decay) -> list[dict]:
    """`group` (with `params`) as given, or split in two: the normalisation layers' weights
    and biases with ``norm_weight_decay``, the rest as before."""
    if norm_weight_decay is None:
        return [{**group, "params": params}]
    in_norm = {id(p) for m in model.modules() if isinstance(m, _NORM_LAYERS)
               for p in m.parameters(recurse=False)}  # fmt: skip
    norm = [p for p in params if id(p) in in_norm]
    rest = [p for p in params if id(p) not in in_norm]
    split = [{**group, "params": rest}] if rest else []
    return split + ([{**group, "params": norm, "weight_decay": norm_weight_decay}] if norm else [])


def make_optimizer(
    model: nn.Module,
    config: TrainConfig,
    steps_per_epoch: int,
    norm_weight_decay: float | None = None,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    """AdamW and a OneCycle schedule over the whole run, stepped once per batch.

    OneCycle warms the learning rate up from ``lr / 25`` to ``lr`` over the first 30% of
    the steps, then anneals it to almost zero. `fit` uses exactly this pair; so can a plot
    of the schedule or a hand-written loop that must match `fit` step for step.

    Frozen parameters (``requires_grad=False``) are left out. With ``config.head`` set, the
    head trains at ``lr`` and the (pretrained) rest at ``lr * config.backbone_lr_ratio``:
    fine-tuning should nudge ImageNet features, not overwrite them with a fresh head's noise.

    ``norm_weight_decay`` is torchvision's option of the same name (its classification
    reference trains with ``--norm-weight-decay 0.0``): a weight decay for the weights and
    biases of normalisation layers (batch, layer, group, instance norm), which only scale and
    shift and gain nothing from being pulled towards zero. ``None`` (the default, and what
    `fit` uses) decays every parameter by ``config.weight_decay``, as before.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if config.head is None:
        parts = [([p for _, p in trainable], config.lr)]
    else:
        model.get_submodule(config.head)  # a wrong name fails here, not silently
        head = [p for n, p in trainable if n.startswith(config.head + ".")]
        backbone = [p for n, p in trainable if not n.startswith(config.head + ".")]
        parts = [(head, config.lr)]
        if backbone:
            parts.append((backbone, config.lr * config.backbone_lr_ratio))
    groups = [g for params, lr in parts
              for g in _split_norm(model, params, {"lr": lr}, norm_weight_decay)]  # fmt: skip
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in groups],
        total_steps=config.epochs * steps_per_epoch,
    )
    return optimizer, scheduler


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)  # overlaps the copy with compute when memory is pinned
    return x.to(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def evaluate_loss_and_map(
    model: nn.Module,
    loader,
    loss_fn: nn.Module,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean loss and macro mAP over a loader (:func:`helpers.inference.run_model`: eval
    mode, no gradients, logits gathered in float32 on the CPU, the model's mode restored).

    The loss is the mean of the per-batch losses weighted by batch size, batches as the
    loader made them (a loss that depends on the batch, such as one rejecting a batch's
    largest terms, sees the batches it saw before). Under DDP with a DistributedSampler each
    rank sees a shard: the logits and targets of all ranks are gathered so that loss and
    mAP are those of the whole set, on every rank.
    """

    sizes = []  # each batch's size: the loss is computed over the same batches

    def forward(x: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        if channels_last and x.ndim == 4:
            x = x.to(memory_format=torch.channels_last)
        with amp_autocast(device, amp_dtype):
            return model(x)

    logits, targets = run_model(model, loader, device, forward=forward)
    if distributed.is_sharded(loader):  # mAP is not a mean of per-shard mAPs: gather first
        n_all = len(loader.sampler.dataset)
        logits = distributed.gather(logits, n_all)
        targets = distributed.gather(targets, n_all)
        chunks = [(logits, targets)]
    else:
        chunks = list(zip(logits.split(sizes), targets.split(sizes), strict=True))
    with torch.no_grad():
        total = sum(loss_fn(z.to(device), y.to(device)).item() * len(y) for z, y in chunks)
    return total / len(logits), mean_average_precision(torch.sigmoid(logits), targets)


def _make_ema(model: nn.Module, decay: float | None):
    """An exponential moving average (EMA) of `model`'s weights, or None if `decay` is None.

    After each step the EMA moves a fraction ``1 - decay`` towards the current weights, so
    it averages roughly the last ``1 / (1 - decay)`` steps: smoother than the last step's
    weights, and often a little better on validation data. Batch-norm statistics are
    averaged too (``use_buffers=True``).
    """
    if decay is None:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"ema_decay must be between 0 and 1, got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _last_good(config: TrainConfig) -> str:
    """Where the last finished epoch is, for the message of a run that stops."""
    if not config.checkpoint:
        return "set TrainConfig.checkpoint to keep the last finished epoch."
    if Path(config.checkpoint).exists():
        return f"the last finished epoch is in {config.checkpoint}."
    return f"no epoch had finished, so nothing was written to {config.checkpoint}."


def _seed_epoch(loader, seed: int, epoch: int) -> None:
    """Make epoch `epoch`'s shuffling and augmentation depend on the epoch only: exact resumes."""
    torch.manual_seed(seed + epoch)  # this epoch's shuffle, dropout, augmentation
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(seed + epoch)  # a loader's own generator
    if hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(epoch)  # DistributedSampler: a new order each epoch


def train_one_epoch(
    model,
    loader,
    loss_fn,
    optimizer,
    scheduler,
    scaler,
    epoch: int,
    config: TrainConfig,
    device: torch.device,
    ema=None,
) -> dict:
    """One pass over `loader`, one optimizer step per batch; the epoch's loss, lr and speed.

    `model` may be wrapped in DDP; the loss and image count are then summed over all ranks.
    """
    amp_dtype, _ = amp_settings(device, config.amp)
    _seed_epoch(loader, config.seed, epoch)
    model.train()
    start, seen, total_loss = time.perf_counter(), 0, 0.0
    for step, (x, y) in enumerate(_progress_bar(loader, epoch, config)):
        x, y = _to_device(x, device, config.channels_last), y.to(device, non_blocking=True)
        with amp_autocast(device, amp_dtype):
            logits = model(x)
        loss = loss_fn(logits.float(), y)  # the loss in fp32: sigmoid/log are precision-hungry
        if not torch.isfinite(loss):  # stop before backward spreads NaN into the weights
            raise _diverged(loss, epoch, step, config)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(distributed.unwrap(model))
        total_loss += loss.item() * len(y)
        seen += len(y)
    seconds = time.perf_counter() - start
    total_loss, seen = distributed.all_sum(total_loss, seen)  # all ranks' batches
    distributed.sync_buffers(distributed.unwrap(model))  # batch-norm statistics: rank 0's
    if ema is not None:
        distributed.sync_buffers(ema.module)  # its averaged statistics too
    row = {"train_loss": total_loss / seen, "lr": scheduler.get_last_lr()[0]}
    return row | {"seconds": seconds, "img_per_s": seen / seconds}


def _progress_bar(loader, epoch: int, config: TrainConfig):
    """The loader's batches behind a tqdm bar (on rank 0, with ``config.progress``)."""
    return tqdm(
        iter(loader),  # start the loader here, right after seeding, whatever wraps it
        total=len(loader),
        desc=f"epoch {epoch + 1}/{config.epochs}",
        disable=not (config.progress and distributed.is_main()),
        leave=False,
    )


def _diverged(loss: torch.Tensor, epoch: int, step: int, config: TrainConfig) -> Exception:
    """The error that stops a run whose loss is NaN or infinite, naming where it happened."""
    return FloatingPointError(
        f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}: stopping. "
        "Lower the learning rate or check the inputs; " + _last_good(config)
    )


def _run_record(model: nn.Module, train_loader, loss_fn) -> dict:
    """What a resumed run must share with the checkpoint besides its TrainConfig.

    Steps per epoch (and, when the loader says, its batch size and data-set size) fix the
    OneCycle schedule; the loss's class, settings and buffers (such as ``pos_weight``) and
    the model's class and parameter shapes fix what is optimised.
    """
    record = {"steps_per_epoch": len(train_loader)}
    if getattr(train_loader, "batch_size", None) is not None:
        record["batch_size"] = train_loader.batch_size
    if hasattr(getattr(train_loader, "dataset", None), "__len__"):
        record["train_size"] = len(train_loader.dataset)
    record["loss"] = _qualified_name(loss_fn)
    if isinstance(loss_fn, nn.Module):
        for name, value in vars(loss_fn).items():
            if not name.startswith("_") and name != "training" and _is_plain(value):
                record[f"loss.{name}"] = value
        for name, tensor in loss_fn.state_dict().items():
            record[f"loss.{name}"] = tensor.tolist()
    record["model"] = _qualified_name(model)
    for name, tensor in model.state_dict().items():
        record[f"model.{name}"] = list(tensor.shape)
    return record


def _qualified_name(obj) -> str:
    """``helpers.models.SmallCNN`` for a module (its class), the function's own name otherwise."""
    kind = type(obj) if isinstance(obj, nn.Module) else obj
    return f"{kind.__module__}.{getattr(kind, '__qualname__', repr(kind))}"


def _is_plain(value) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


_OPTIONAL = ("batch_size", "train_size")  # unknown for some loaders: compared when both known


def _check_resumable(state: dict, config: TrainConfig, run: dict) -> None:
    """Refuse a checkpoint this run cannot continue, naming the file and what differs.

    Resuming with other settings, data, loss or model would silently mix two runs.
    """
    path = config.checkpoint
    needed = {"model", "optimizer", "scheduler", "scaler", "epoch", "history", "config", "run"}
    needed |= {"ema"} if config.ema_decay is not None else set()
    if missing := sorted(needed - state.keys()):
        raise ValueError(f"checkpoint {path} lacks {missing}: it was not written by this fit")
    epoch = state["epoch"]
    if not (isinstance(epoch, int) and isinstance(state["history"], list)) or not (
        0 <= epoch < config.epochs and len(state["history"]) == epoch + 1
    ):
        raise ValueError(
            f"checkpoint {path} records epoch {epoch!r} with a history that "
            f"does not match it: delete the file"
        )
    if bad := non_finite_fields(state):
        raise ValueError(f"checkpoint {path} holds NaN or infinite values in {', '.join(bad[:5])}")
    ignore = ("progress", "checkpoint")  # neither changes the weights
    stored = {**asdict(TrainConfig()), **state["config"]}  # settings added since: defaults
    before = {k: v for k, v in stored.items() if k not in ignore}
    now = {k: v for k, v in asdict(config).items() if k not in ignore}
    differ = [k for k in sorted(before.keys() | now.keys()) if before.get(k) != now.get(k)]
    before, now = state["run"], run
    differ += [
        k
        for k in dict.fromkeys([*before, *now])
        if before.get(k) != now.get(k)
        and not (k in _OPTIONAL and None in (before.get(k), now.get(k)))
    ]
    if differ:
        before, now = {**stored, **state["run"]}, {**asdict(config), **run}
        shown = differ[:6]
        more = f" (and {len(differ) - 6} more)" if len(differ) > 6 else ""
        was = ", ".join(f"{k}={before.get(k)}" for k in shown) + more
        asks = ", ".join(f"{k}={now.get(k)}" for k in shown) + more
        raise ValueError(
            f"checkpoint {path} was written with {was}; this run asks for {asks}: "
            "delete the file or use the same settings"
        )


def _resume(parts: dict, config: TrainConfig, run: dict, device: torch.device) -> tuple[int, list]:
    """The first epoch to run and the history so far: (0, []) unless `config.checkpoint` is
    a file, which is then loaded into `parts` (model, optimizer, ...) if it fits this run."""
    if not (config.checkpoint and Path(config.checkpoint).exists()):
        return 0, []
    state = load_checkpoint(config.checkpoint, device)
    _check_resumable(state, config, run)
    for name, part in parts.items():
        if part is not None and not (name == "scaler" and not state["scaler"]):
            part.load_state_dict(state[name])  # no scaler state when written without (CPU, bf16)
    return state["epoch"] + 1, state["history"]


def fit(
    model: nn.Module,
    train_loader,
    val_loader,
    loss_fn: nn.Module,
    config: TrainConfig,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Train `model` and return its history, one row per epoch.

    If ``config.checkpoint`` names an existing file, training resumes after the epoch it
    recorded and ends with the same weights as an uninterrupted run: each epoch's
    shuffling and augmentation are seeded from ``config.seed + epoch``. A checkpoint written
    with other settings, data, loss or model is refused with a ValueError naming what differs.

    Started by ``torchrun`` (see helpers.distributed), the same function trains with
    DistributedDataParallel: only rank 0 writes the checkpoint (the others wait), a resume
    loads on every rank, and the history holds the metrics of all ranks together.
    """
    device = torch.device(device)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    amp_dtype, use_scaler = amp_settings(device, config.amp)
    optimizer, scheduler = make_optimizer(model, config, len(train_loader))
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    ema = _make_ema(model, config.ema_decay)  # None unless config.ema_decay is set
    parts = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, ema=ema)
    run = _run_record(model, train_loader, loss_fn)
    start_epoch, history = _resume(parts, config, run, device)  # (0, []) unless resuming

    wrapped = distributed.wrap(model, device)  # under torchrun: DDP, which all-reduces gradients
    validated = model if ema is None else ema.module  # with EMA: validate the averaged weights
    for epoch in range(start_epoch, config.epochs):
        row = {"epoch": epoch + 1}
        row |= train_one_epoch(
            wrapped, train_loader, loss_fn, optimizer, scheduler, scaler, epoch, config, device, ema
        )
        row["val_loss"], row["val_mAP"] = evaluate_loss_and_map(
            validated, val_loader, loss_fn, device, amp_dtype, config.channels_last
        )
        history.append(row)
        if config.checkpoint and distributed.is_main():  # one writer; the others wait below
            state = {name: part.state_dict() for name, part in parts.items() if part is not None}
            state |= {"epoch": epoch, "history": history, "config": asdict(config), "run": run}
            save_checkpoint(config.checkpoint, state)
        distributed.barrier()  # nobody reads the checkpoint or races ahead before it is written
    if ema is not None:  # the caller gets the weights that were validated
        model.load_state_dict(ema.module.state_dict())
    return pd.DataFrame(history).set_index("epoch")[_HISTORY_COLUMNS]
