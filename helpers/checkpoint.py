"""Checkpoint files: written atomically, read as data, refused when damaged.

Training (``helpers.train``) and prediction (``helpers.predict``) both keep their state in
such files, so the file format lives here, apart from either. A file is what ``torch.save``
writes: a zip archive whose every record carries a CRC-32 checksum. PyTorch's loader does
not check those checksums, so a flipped bit in a weight would load as a slightly different,
plausible model; `load_checkpoint` checks them first.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import torch

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "non_finite_fields",
    "save_checkpoint",
]


class CheckpointError(ValueError):
    """A checkpoint file that is empty, truncated, damaged or not a checkpoint."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file, force it to disk, then rename over the old checkpoint.

    A crash of the program or a power cut mid-write never leaves a torn file: the rename
    happens only after ``os.fsync`` has put every byte of the new file on disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """The dict a checkpoint file holds, or a `CheckpointError` naming the file.

    Every record's checksum is verified before loading, and the load uses
    ``weights_only=True``: a checkpoint is data, it must not be able to run code.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): delete it")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every record and compares its CRC-32
    except Exception as err:  # zipfile, zlib and struct each raise their own errors
        raise _unreadable(path, err) from err
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: {bad} fails its CRC-32 check")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # pickle and torch too
        raise _unreadable(path, err) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} cannot be read (truncated, damaged or not a checkpoint): {err}"
    )


def non_finite_fields(obj, prefix: str = "") -> list[str]:
    """Dotted names of the floats and floating tensors in `obj` holding NaN or infinity."""
    if isinstance(obj, torch.Tensor):
        bad = obj.is_floating_point() and not bool(torch.isfinite(obj).all())
        return [prefix] if bad else []
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [prefix]
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return []
    found = []
    for key, value in items:
        found += non_finite_fields(value, f"{prefix}.{key}" if prefix else str(key))
    return found
