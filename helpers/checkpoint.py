"""Checkpoint files: written atomically, read as data, refused when damaged.

Training (``helpers.train``) and prediction (``helpers.predict``) both keep their state in
such files, so the file format lives here, apart from either. A file is the state dict
written by ``torch.save`` plus one key, ``checkpoint_sha256``: a digest of every tensor's
bytes and every other value. PyTorch's loader does not check the zip's CRCs, so without it
a flipped bit in a weight would load as a slightly different, plausible model.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch

_DIGEST_KEY = "checkpoint_sha256"


class CheckpointError(ValueError):
    """A checkpoint file that is empty, truncated, damaged or not a checkpoint."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file, force it to disk, then rename over the old checkpoint.

    A crash of the program or a power cut mid-write never leaves a torn file: the rename
    happens only after ``os.fsync`` has put every byte of the new file on disk.
    """
    if _DIGEST_KEY in state:
        raise ValueError(f"{_DIGEST_KEY} is the digest's own key: rename that entry of the state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({**state, _DIGEST_KEY: _digest(state)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """The state `save_checkpoint` wrote, or a `CheckpointError` naming the file.

    Loads with ``weights_only=True``: a checkpoint is data, it must not be able to run code.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): delete it")
    try:
        stored = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated, damaged or not a checkpoint): {err}"
        ) from err
    if not isinstance(stored, dict) or _DIGEST_KEY not in stored:
        raise CheckpointError(
            f"checkpoint {path} was not written by helpers.checkpoint.save_checkpoint "
            f"(it has no {_DIGEST_KEY})"
        )
    expected = stored.pop(_DIGEST_KEY)
    if _digest(stored) != expected:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its content does not match its sha256 digest"
        )
    return stored


def _digest(obj) -> str:
    """sha256 over a nested structure of dicts, lists, tensors and plain values."""
    h = hashlib.sha256()
    for chunk in _chunks(obj):
        h.update(chunk)
    return h.hexdigest()


def _chunks(obj) -> Iterator[bytes]:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        yield f"T{t.dtype}{tuple(t.shape)}".encode()
        yield t.reshape(-1).view(torch.uint8).numpy().tobytes()
    elif isinstance(obj, dict):
        yield f"D{len(obj)}".encode()
        for key, value in obj.items():
            yield from _chunks(key)
            yield from _chunks(value)
    elif isinstance(obj, list | tuple):
        yield f"{type(obj).__name__}{len(obj)}".encode()
        for value in obj:
            yield from _chunks(value)
    else:
        yield f"{type(obj).__name__}:{obj!r};".encode()


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
