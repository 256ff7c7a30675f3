"""How fast does training go, and how much of each step waits for data?

On a GPU the usual bottleneck of an image pipeline is not the model but the CPU: decoding
JPEGs and resizing them. :class:`DataWaitMeter` wraps a DataLoader and adds up the time
the training loop spends blocked on ``next(batch)``. Divided by the epoch's time, that is
the fraction of each step spent waiting for data: near 0, the GPU is the limit; large,
more DataLoader workers (or cheaper decoding) would speed training up.
:func:`time_side_by_side` is how the benchmark scripts compare two loops fairly.

The wait is measured where the loop asks for a batch. It is only meaningful when the loop
synchronises with the device once per step (``helpers.train.fit`` does: it reads
``loss.item()``); otherwise queued GPU work hides inside the next wait.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

__all__ = [
    "DataWaitMeter",
    "SpeedReport",
    "speed_report",
    "time_side_by_side",
]


class DataWaitMeter:
    """A DataLoader wrapper that counts the seconds spent waiting for each batch.

    It passes ``len()`` and the loader's ``generator`` through, so ``helpers.train.fit``
    accepts it in place of the loader. ``clock`` is replaceable for tests.
    """

    def __init__(self, loader, clock: Callable[[], float] = time.perf_counter):
        self.loader, self.clock = loader, clock
        self.wait_seconds, self.batches, self.images = 0.0, 0, 0

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def generator(self):
        return getattr(self.loader, "generator", None)

    def reset(self) -> None:
        self.wait_seconds, self.batches, self.images = 0.0, 0, 0

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        while True:
            start = self.clock()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.wait_seconds += self.clock() - start
            self.batches += 1
            self.images += len(batch[0])
            yield batch


@dataclass(frozen=True)
class SpeedReport:
    images: int
    seconds: float
    wait_seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def data_wait_fraction(self) -> float:
        """Share of the training time spent waiting for batches (0: never waited)."""
        return min(self.wait_seconds / self.seconds, 1.0)

    def __str__(self) -> str:
        return (
            f"{self.images_per_s:.1f} img/s over {self.images} images; "
            f"{self.data_wait_fraction:.0%} of the time waiting for data"
        )


def speed_report(meter: DataWaitMeter, train_seconds: float) -> SpeedReport:
    """Throughput and data-wait share of the epochs `meter` counted, which took `train_seconds`
    (e.g. ``history["seconds"].sum()`` from ``fit``)."""
    if not train_seconds > 0:  # NaN too
        raise ValueError(f"train_seconds must be positive, got {train_seconds}")
    return SpeedReport(meter.images, train_seconds, meter.wait_seconds)


def _timed(run: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()  # GPU work is asynchronous: wait for it before stopping
    return time.perf_counter() - start


def time_side_by_side(
    runs: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds of each run, measured in one process, interleaved, after a warm-up.

    Timing A then B on a shared machine compares two moments, not two programs: the load
    changes in between. Alternating who goes first in each repeat and taking medians makes
    the ratio of the two the thing a benchmark script can honestly print.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1 (a median needs a run), got {repeats}")
    for run in runs.values():  # warm-up: allocator, kernels, first touch of the data
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]  # alternate who goes first
        for name in order:
            seconds[name].append(_timed(runs[name], device))
    return {name: statistics.median(t) for name, t in seconds.items()}
