"""scripts/gpu_check.py on a machine without a GPU: every row skipped, exit 0, valid JSON;
its table, JSON and exit status; and the checks that also run on a CPU."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up there
spec.loader.exec_module(gpu_check)
Row = gpu_check.Row


def test_without_a_gpu_every_row_is_skipped_and_the_exit_status_is_0(tmp_path):
    out = tmp_path / "table.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU even where there is one
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no CUDA device: every check skipped" in result.stdout
    table = json.loads(out.read_text())
    names = [name for name, _ in gpu_check.checks(300)]
    assert [r["check"] for r in table["rows"]] == names
    assert {r["status"] for r in table["rows"]} == {"skipped"}
    assert table["failed"] == [] and table["environment"]["gpu"] is None
    for name in names:  # the printed table has one line per check
        assert any(line.startswith(name) for line in result.stdout.splitlines())


def test_a_failing_check_fails_the_run_and_the_others_still_run():
    def boom(device):
        raise RuntimeError("CUDA error: an illegal memory access")

    def skip(device):
        raise gpu_check.Skip("no native bf16")

    def fine(device):
        return Row("ignored name", "ok", "fine", metrics={"x": 1.0})

    rows = gpu_check.run_checks([("a", boom), ("b", skip), ("c", fine)], device=torch.device("cpu"))
    assert [(r.check, r.status) for r in rows] == [("a", "FAIL"), ("b", "skipped"), ("c", "ok")]
    assert "RuntimeError: CUDA error" in rows[0].detail and rows[1].detail == "no native bf16"
    assert gpu_check.exit_status(rows) == 1
    assert gpu_check.exit_status(rows[1:]) == 0


def test_table_and_json_formats():
    rows = [Row("fp16 autocast + GradScaler", "ok", "loss 0.7 -> 0.3", 3.4, {"a": 1}),
            Row("bf16", "skipped", "no native bf16")]  # fmt: skip
    lines = gpu_check.format_table(rows).splitlines()
    assert lines[0].split() == ["check", "status", "seconds", "detail"]
    assert len(lines) == 4 and set(lines[1]) <= {"-", " "}
    assert lines[2].index("ok") == lines[3].index("skipped") == lines[0].index("status")
    assert lines[2].endswith("loss 0.7 -> 0.3") and " 3  " in lines[2]
    data = json.loads(json.dumps(gpu_check.to_json(rows, {"gpu": "X"})))
    expected = {"check": "fp16 autocast + GradScaler", "status": "ok",
                "detail": "loss 0.7 -> 0.3", "seconds": 3.4, "metrics": {"a": 1}}  # fmt: skip
    assert data["rows"][0] == expected
    with pytest.raises(ValueError, match="unknown status 'maybe'"):
        gpu_check.to_json([Row("x", "maybe")], {})


def test_skipped_step_check_on_cpu():
    """The check's own logic, on the CPU's GradScaler: step 1 is skipped, weights stay put,
    the scale halves, the schedule still moves and torch warns about the order."""
    row = gpu_check.check_skipped_step(torch.device("cpu"))
    assert row.status == "ok", row.detail
    m = row.metrics
    assert m["weights_moved_on_skip"] is False and m["scales"][1] == m["scales"][0] / 2
    assert m["lrs"][1] != m["lrs"][0] and m["scheduler_warning"] is True


def test_ema_check_and_synthetic_voc_on_cpu(tmp_path):
    assert gpu_check.check_ema_fit(torch.device("cpu")).status == "ok"
    from helpers.voc_training import CPU_PRESET, prepare_splits

    gpu_check.write_synthetic_voc(tmp_path, 40)
    splits = prepare_splits(tmp_path, CPU_PRESET)
    image, target = splits["train"][0]
    assert image.shape == (3, CPU_PRESET.size, CPU_PRESET.size) and target.shape == (20,)
