"""Seeding, device choice, the kernel pins and the provenance report every chapter prints.

A page of this book shows numbers. The report says where they came from: which device,
which library versions, which data and weights, and which CPU kernels made them.
"""

from __future__ import annotations

import html
import os
import platform
import random
import socket
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision

from helpers.pins import OFFLINE_ENV, PINNED_ENV, offline, stored_run

__all__ = [
    "EnvironmentReport",
    "cpu_native_bf16",
    "environment_report",
    "glue",
    "in_colab",
    "notebook_setup",
    "pick_device",
    "reachable",
    "script_path",
    "seed_everything",
    "shown_path",
]


def _pins_in_force() -> bool:
    """True when this process runs under every pin of `PINNED_ENV`, checked where it can be.

    The variables are checked as set, and the two that PyTorch reports are checked as
    applied: the kernels it dispatches to and its thread count.
    """
    set_as_pinned = all(os.environ.get(k) == v for k, v in PINNED_ENV.items())
    applied = torch.backends.cpu.get_cpu_capability() == "AVX2" and torch.get_num_threads() == 1
    return set_as_pinned and applied


def cpu_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX) and may use it.

    Without native bf16, bf16 autocast on a CPU is emulated and can be several times slower
    than fp32. The instructions are asked of the CPU (PyTorch's CPUID checks); under the
    pins (AVX2 kernels) they may not be used, so the answer is False there.
    """
    has = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper().startswith(("AVX2", "SSE", "AVX_"))
    allowed = torch.backends.cpu.get_cpu_capability().startswith("AVX512") and not capped
    return bool(has and allowed)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator seeded the same way.

    Pass the generator to DataLoaders and samplers so their shuffling does not depend on
    how many random numbers other code drew before.
    """
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds code that uses the global NumPy RNG
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA if present, then Apple's MPS, then CPU. `prefer` (e.g. "cpu") overrides."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    n = torch.get_num_threads()
    return f"CPU, {n} thread{'' if n == 1 else 's'}"


def in_colab() -> bool:
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class EnvironmentReport:
    """Where a page's outputs were produced: one line of plain words, the table a click away.

    A chapter opens with its story, not with bookkeeping: the page shows `summary` (device,
    data, weights) and folds the full `table` (versions, kernels, notes) into a
    ``<details>`` element; plain-text front ends print the line and the rows, wrapped to the
    page's 79 characters.
    """

    summary: str
    table: pd.DataFrame

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self.table["value"].items()
        )
        return (
            f"<p>{html.escape(self.summary)}</p><details><summary>Full environment "
            f"report</summary><table>{rows}</table></details>"
        )

    def __repr__(self) -> str:
        lines = textwrap.wrap(self.summary, 79)
        for key, value in self.table["value"].items():
            lines += textwrap.wrap(f"{key}: {value}", 79, subsequent_indent="    ")
        return "\n".join(lines)


def environment_report(
    device: torch.device, data: str, pretrained: str = "none", data_note: str = ""
) -> EnvironmentReport:
    """State where this page's outputs were produced: a summary line and the full table.

    `data` names the data actually loaded (not the data the chapter hoped for) and
    `pretrained` the weights actually used, so a CPU run from random weights can never be
    mistaken for a GPU run from ImageNet weights.
    """
    rows = {
        "device": f"{device.type} ({_device_name(device)})",
        "platform": "Google Colab" if in_colab() else platform.system(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "data": data,
        "pretrained weights": pretrained,
        **_kernels_rows(device),
    }
    if data_note:
        rows["data note"] = data_note
    table = pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="setting"))
    summary = f"Run on {rows['device']}; data: {data}; pretrained weights: {pretrained}."
    return EnvironmentReport(summary=summary, table=table)


def _kernels_rows(device: torch.device) -> dict[str, str]:
    """What makes this run's numbers reproducible, and what a reader's own run will give."""
    if device.type == "cpu" and _pins_in_force():
        return {
            "kernels": "pinned: AVX2 kernels, 1 thread, bundled digits, no downloads",
            "your run": "these numbers on any x86-64 CPU under the same pins; close but "
            "not identical ones in Colab, on a GPU or with your CPU's own kernels",
        }
    return {
        "kernels": "not pinned: this machine's fastest kernels",
        "your run": "close to, not identical with, the stored page (made under the pins)",
    }


def _short_warning(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}\n"


def notebook_setup(seed: int = 0) -> torch.device:
    """What every chapter does first: seed, pick the device, and keep errors short.

    Tracebacks are set to IPython's ``Minimal`` mode and warnings are printed without the
    library file they come from: the message is the lesson, and a stored page must not show
    the folders of the machine that ran it.
    """
    import warnings

    warnings.formatwarning = _short_warning
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.InteractiveTB.set_mode("Minimal")  # as %xmode Minimal, without printing
    except ImportError:
        pass
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_colwidth", 200)  # provenance rows must not be cut short
    seed_everything(seed)
    return pick_device()


def glue(name: str, value, display: bool = False) -> None:
    """Record `value` for the prose, which cites it as ``{glue:text}`name```.

    In a stored run (`helpers.pins.stored_run`) myst_nb records it silently and the built
    site puts the value into the sentence. Jupyter and Colab do not render glue roles: a
    reader there sees the key, so the value is printed as ``name = value`` under the cell
    that computed it, just above the prose that cites it.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # NumPy 2 / torch scalars: the book formats plain Python numbers
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        myst_glue = None
    if myst_glue is None or not stored_run():
        print(f"{name} = {value}")
        return
    myst_glue(name, value, display=display)


def shown_path(path: Path) -> str:
    """A path as a reader should see it: relative to the working directory, or with ``~``."""
    path = Path(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


def script_path(name: str) -> Path:
    """``scripts/<name>``: the repository's copy, else the one installed with helpers (Colab).

    Chapters run the book's scripts (benchmarks, the DDP script). Inside a clone the
    repository's file is used, shown relative to the working directory
    (``../scripts/train_ddp.py``); a chapter alone in Colab finds the copy that ships in
    the wheel as ``helpers/scripts/``.
    """
    here = Path.cwd()
    for folder in [here, *here.parents]:
        if (folder / "_toc.yml").exists() and (folder / "scripts" / name).exists():
            return Path(os.path.relpath(folder / "scripts" / name))
    installed = Path(__file__).parent / "scripts" / name
    if installed.exists():
        return installed
    raise FileNotFoundError(
        f"scripts/{name} is neither in this repository nor installed with helpers "
        "(reinstall the book's helpers package from the repository)"
    )


def reachable(host: str, timeout: float) -> str | None:
    """None if a TCP connection to `host`:443 opens within `timeout` seconds, else the reason.

    Runs in a thread so that a DNS lookup that hangs (some offline networks) cannot hang the
    notebook: the check gives up after `timeout` seconds whatever the resolver does.
    """
    if offline():
        return f"{OFFLINE_ENV}=1: the network is not used"
    reason: list[str] = ["no answer within the timeout"]

    def connect() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            reason.clear()
        except OSError as err:
            reason[0] = f"{type(err).__name__}: {err}"

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return reason[0] if reason else None
