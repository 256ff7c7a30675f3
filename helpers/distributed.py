"""Several processes training one model: DistributedDataParallel started by ``torchrun``.

``torchrun --nproc_per_node=N script.py`` starts N copies of the script and tells each,
through environment variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
who it is and where to meet the others. Every function here also works in a plain
single process (rank 0 of 1, nothing to talk to), so one script serves both cases and
``helpers.train.fit`` needs no separate code path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from helpers.env import pick_device

__all__ = [
    "all_sum",
    "barrier",
    "cleanup",
    "gather",
    "init_from_env",
    "interleave",
    "is_main",
    "is_sharded",
    "make_loaders",
    "sync_buffers",
    "unwrap",
    "world_size",
    "wrap",
]


def _backend_for(device: torch.device) -> str:
    """NCCL between GPUs (it talks over NVLink/PCIe directly), gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env() -> torch.device:
    """Join the process group that torchrun describes in the environment; return our device.

    Without torchrun (no WORLD_SIZE variable) it starts nothing and returns the usual
    device, so the same script also runs as one process. With GPUs, process LOCAL_RANK
    takes GPU LOCAL_RANK: one process per device, never two on the same GPU.
    """
    device = pick_device()
    if "WORLD_SIZE" not in os.environ:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)  # NCCL and "cuda" without an index use this GPU
    if not dist.is_initialized():
        dist.init_process_group(_backend_for(device))  # reads RANK, WORLD_SIZE, MASTER_* itself
    return device


def _rank() -> int:
    """This process's number, 0..world_size-1 (0 in a single process)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 in a single process)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 does the printing and the file writing: N processes writing one file corrupt it."""
    return _rank() == 0


def barrier() -> None:
    """Wait until every process gets here (e.g. until rank 0 has written a checkpoint)."""
    if world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group at the end of a script, so that every process exits cleanly."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when there are several processes, else `model`.

    DDP copies rank 0's weights to every process once, then, during ``backward``, averages
    each gradient over all processes (an all-reduce) while the rest of backward still runs.
    Every process then takes the same optimizer step, so the weights stay identical.
    """
    if world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None  # CPU: none
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (the one to average, checkpoint and return), else `model`."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def make_loaders(
    train_set: Dataset,
    val_set: Dataset,
    batch_size: int,
    seed: int = 0,
    val_batch_size: int | None = None,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """Loaders that give each process its own share of the data, through DistributedSampler.

    `batch_size` is per process: the global batch (one optimizer step) is ``batch_size *
    world_size()``. The training sampler shuffles with ``seed + epoch``, identically on
    every rank, and hands rank r every world_size-th index of that permutation; call
    ``sampler.set_epoch(epoch)`` each epoch (``fit`` does) or every epoch repeats epoch 0's
    order. The sampler pads with repeated samples so that every rank gets as many batches:
    a rank with one batch fewer would wait forever for the others' gradients. The
    validation sampler does not shuffle; `gather` removes its padding again.
    """
    replicas, me = world_size(), _rank()
    train_sampler = DistributedSampler(train_set, replicas, me, shuffle=True, seed=seed)
    val_sampler = DistributedSampler(val_set, replicas, me, shuffle=False)
    train = DataLoader(train_set, batch_size, sampler=train_sampler, pin_memory=pin_memory)
    val = DataLoader(
        val_set, val_batch_size or batch_size, sampler=val_sampler, pin_memory=pin_memory
    )
    return train, val


def is_sharded(loader) -> bool:
    """True when `loader` reads one rank's share of a data set (DistributedSampler, >1 process)."""
    return world_size() > 1 and isinstance(getattr(loader, "sampler", None), DistributedSampler)


def interleave(parts: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """Rows of every rank's shard back in data set order, padding removed.

    Without shuffling, DistributedSampler gives rank r the indices r, r + W, r + 2W, ...
    of ``range(n)`` followed by up to W - 1 repeated indices; so row i of rank r's part is
    sample ``i * W + r``. Stacking the parts on a new second axis and flattening puts every
    sample at its index; the first n rows are the data set, the rest is padding.
    """
    rows = torch.stack(list(parts), dim=1).flatten(0, 1)
    _check_count(n, len(rows))
    return rows[:n]


def _check_count(n: int, rows: int) -> None:
    """`n` samples must fit in the `rows` gathered: more would silently come back short."""
    if not 0 <= n <= rows:
        raise ValueError(f"n = {n} samples, but the ranks hold {rows} rows together")


def _comm_device() -> torch.device:
    """Where tensors must be to travel: NCCL moves GPU memory only, gloo CPU memory."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather(tensor: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's rows of `tensor` (its share of an n-sample set), in order, on every rank.

    Metrics such as mAP are not averages of per-shard values: they need all predictions
    at once. Each rank's share has the same number of rows (the sampler padded them), which
    all_gather needs. Returns a tensor on the input's device.
    """
    if world_size() == 1:
        _check_count(n, len(tensor))
        return tensor[:n]
    comm = _comm_device()
    local = tensor.to(comm).contiguous()
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local)
    return interleave(parts, n).to(tensor.device)


def all_sum(*values: float) -> tuple[float, ...]:
    """Sum numbers (a loss total, a sample count) over all ranks; unchanged in one process."""
    if world_size() == 1:
        return values
    comm = _comm_device()
    t = torch.tensor(values, dtype=torch.float64, device=comm)
    dist.all_reduce(t)
    return tuple(t.tolist())


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (batch norm's running statistics) to every rank.

    DDP averages gradients, so parameters agree everywhere; buffers are not gradients.
    Each rank's batch norm updates its running mean and variance from its own batches,
    so after an epoch the ranks hold slightly different statistics. Making them rank 0's
    (the ones rank 0 checkpoints) means every rank evaluates the model that is saved.
    """
    if world_size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
