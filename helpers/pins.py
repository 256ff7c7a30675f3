"""The pins: the environment under which stored runs and CI execute the chapters.

A stored page must reproduce on any x86-64 CPU with AVX2, cell for cell. What picks the
kernels (and so the last digits of every sum) is read by the libraries once, when the
process starts, so the runners set these variables before the kernel starts:
``conftest.py`` for nbval and ``scripts/execute_notebooks.py`` for stored runs. This module
imports nothing, so a runner can read the pins before torch is imported. Readers keep their
machine's fastest kernels and the automatic choice of data.
"""

from __future__ import annotations

import os

__all__ = ["OFFLINE_ENV", "PINNED_ENV", "STORED_RUN_ENV", "offline", "stored_run"]

OFFLINE_ENV = "BOOK_OFFLINE"
STORED_RUN_ENV = "BOOK_STORED_RUN"

PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own kernels: AVX2, even where AVX-512 exists
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (convolutions): no AVX-512, AMX or native bf16
    "MKL_CBWR": "AVX2,STRICT",  # MKL (matrix products): AVX2 code path, same on every CPU
    "OMP_NUM_THREADS": "1",  # one thread: a sum's order does not depend on the core count
    "MKL_NUM_THREADS": "1",
    OFFLINE_ENV: "1",  # the bundled digits, no ImageNet weights, whatever the network
    STORED_RUN_ENV: "1",  # outputs are stored for the built site: glue records silently
}


def offline() -> bool:
    """True under ``BOOK_OFFLINE=1``: use no network, so the data and weights are pinned.

    A machine with internet would download full MNIST and ImageNet weights and produce
    other numbers than the stored page; stored runs and CI set this, readers do not.
    """
    return os.environ.get(OFFLINE_ENV, "") == "1"


def stored_run() -> bool:
    """True under ``BOOK_STORED_RUN=1``: this run's outputs are stored for the built site.

    The site renders each ``{glue:text}`` role with its value; Jupyter and Colab show the
    role as written, so outside a stored run `glue` (in env) prints the value instead.
    """
    return os.environ.get(STORED_RUN_ENV, "") == "1"
