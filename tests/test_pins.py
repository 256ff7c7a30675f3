"""The pins hold: under them, training gives the same bits whatever the machine underneath.

Every stored page was made under ``helpers.pins.PINNED_ENV`` and CI compares it under the
same pins. ``scripts/pin_fingerprint.py`` trains a small model with the kernels every
chapter uses and prints the SHA-256 of its weights. These tests run it as a fresh process
(the pins act when a process starts) and check:

- the fingerprint under the pins is the one recorded on the machine that made the stored
  runs (an Intel Xeon with AVX-512 and AMX): on a CI machine with another CPU this is the
  check that the stored pages reproduce there;
- it does not move when what the pins override changes underneath them: the cores the
  process may use (so the default thread count) and the machine's own kernel choice.

What one machine cannot show: that a CPU without AVX-512 gives the same bits. The recorded
value is that check wherever CI runs on such a CPU; under QEMU's Haswell model (no AVX-512)
``scripts/pin_fingerprint.py`` can be run by hand (CONTRIBUTING, "Pins").
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.pins import PINNED_ENV

ROOT = Path(__file__).resolve().parents[1]
RECORDED = "fingerprint 710d552fc3d3960c loss 0.5855720639"  # the stored runs' machine, pinned


def fingerprint(env: dict[str, str], prefix: tuple[str, ...] = ()) -> str:
    run = subprocess.run(
        [*prefix, sys.executable, str(ROOT / "scripts" / "pin_fingerprint.py")],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return run.stdout.splitlines()[0]


def loose_env() -> dict[str, str]:
    """This machine as a reader has it: none of the pins."""
    return {k: v for k, v in os.environ.items() if k not in PINNED_ENV}


@pytest.mark.slow
def test_pinned_training_gives_the_recorded_bits():
    assert fingerprint({**loose_env(), **PINNED_ENV}) == RECORDED, (
        "training under the pins no longer gives the bits recorded with the stored runs: "
        "this CPU or a library version changes the numbers the pins should fix"
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_pins_hold_on_one_core():
    """One visible core instead of all: without the thread pin the thread count would follow."""
    assert fingerprint({**loose_env(), **PINNED_ENV}, ("taskset", "-c", "0")) == RECORDED


@pytest.mark.slow
def test_pins_override_the_kernel_choice_of_the_machine():
    """A machine's own choices set underneath (here: AVX-512 asked for) are overridden."""
    env = {**loose_env(), **PINNED_ENV, "DNNL_MAX_CPU_ISA": "ALL", "KMP_AFFINITY": "compact"}
    assert fingerprint(env) == RECORDED


@pytest.mark.slow
@pytest.mark.skipif(
    not (torch.cpu._is_avx512_supported() and os.cpu_count() > 1),
    reason="only a CPU with AVX-512 and two cores has something for every pin to override",
)
@pytest.mark.parametrize(
    "left_out",
    [
        ("ATEN_CPU_CAPABILITY",),
        ("ONEDNN_MAX_CPU_ISA",),
        ("MKL_CBWR",),
        ("OMP_NUM_THREADS", "MKL_NUM_THREADS"),
    ],  # fmt: skip
    ids=lambda names: names[0],
)
def test_each_pin_overrides_something_here(left_out):
    """On such a CPU, leaving out any one pin changes the bits: none of them is decoration."""
    env = {**loose_env(), **{k: v for k, v in PINNED_ENV.items() if k not in left_out}}
    assert fingerprint(env) != RECORDED
