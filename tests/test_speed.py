"""DataWaitMeter and SpeedReport with a fake clock: no timing in assertions."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers.speed import DataWaitMeter, SpeedReport, speed_report
from helpers.train import TrainConfig, fit


class FakeClock:
    """Every call advances time by 1 s; with two calls per batch, each wait counts 1 s."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def test_meter_counts_batches_images_and_waits():
    loader = DataLoader(TensorDataset(torch.zeros(10, 2), torch.zeros(10, 3)), batch_size=4)
    meter = DataWaitMeter(loader, clock=FakeClock())
    assert len(meter) == 3
    seen = [len(x) for x, _ in meter]
    assert seen == [4, 4, 2]
    assert meter.batches == 3 and meter.images == 10 and meter.wait_seconds == 3.0
    meter.reset()
    assert meter.images == 0 and meter.wait_seconds == 0


def test_report_fraction_and_text():
    report = SpeedReport(images=200, seconds=10.0, wait_seconds=2.5)
    assert report.images_per_s == 20.0
    assert report.data_wait_fraction == 0.25
    assert str(report) == "20.0 img/s over 200 images; 25% of the time waiting for data"
    with pytest.raises(ValueError):
        speed_report(DataWaitMeter([]), 0.0)


def test_fit_accepts_the_meter_and_keeps_the_same_weights():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), (torch.rand(32, 3) > 0.5).float())

    def run(wrap):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        loader = DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator())
        train = DataWaitMeter(loader) if wrap else loader
        cfg = TrainConfig(epochs=2, amp=False, progress=False)
        history = fit(model, train, DataLoader(data, batch_size=16), nn.BCEWithLogitsLoss(), cfg)
        return model, history, train

    plain, _, _ = run(False)
    metered, history, meter = run(True)
    assert torch.equal(plain.weight, metered.weight)
    assert meter.images == 64 and meter.batches == 8
    report = speed_report(meter, history["seconds"].sum())
    assert report.images == 64 and report.seconds == history["seconds"].sum()
    assert report.data_wait_fraction == min(meter.wait_seconds / report.seconds, 1.0)


@pytest.mark.slow  # runs the script in a subprocess
def test_benchmark_script_quick_output_format():
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "scripts/benchmark_voc_step.py", "--quick", "--device", "cpu"]
        + ["--size", "16", "--batch-size", "4", "--steps", "1", "--repeats", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "data: synthetic tensors" in out
    assert re.search(r"bare loop: \d+(\.\d+)? img/s", out)
    assert re.search(r"helpers\.train\.fit: \d+(\.\d+)? img/s", out)
    assert re.search(r"time ratio fit / bare loop: \d+\.\d{3}", out)


def test_time_side_by_side_warms_up_alternates_and_takes_medians(monkeypatch):
    import helpers.speed as speed

    calls: list[str] = []
    durations = {"a": iter([5.0, 1.0, 3.0]), "b": iter([2.0, 2.0, 9.0])}

    def fake_timed(run, device):
        run()
        return next(durations[calls[-1]])

    monkeypatch.setattr(speed, "_timed", fake_timed)
    runs = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    medians = speed.time_side_by_side(runs, repeats=3, device=torch.device("cpu"))
    # one untimed warm-up each, then a b / b a / a b: neither always runs first
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert medians == {"a": 3.0, "b": 2.0}
