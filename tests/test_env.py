import pytest
import torch

from helpers.env import (
    cpu_native_bf16,
    environment_report,
    pick_device,
    reachable,
    script_path,
    seed_everything,
)
from helpers.pins import PINNED_ENV, offline


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("", False)])
def test_offline_reads_the_variable(monkeypatch, value, expected):
    monkeypatch.setenv("BOOK_OFFLINE", value)
    assert offline() is expected


def test_offline_answers_without_trying_the_network(monkeypatch):
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    assert reachable("example.invalid", timeout=0.01) == "BOOK_OFFLINE=1: the network is not used"


def test_pins_are_what_the_test_process_runs_under():
    """conftest.py sets the pins before torch starts; PyTorch reports them as applied."""
    assert all(__import__("os").environ[k] == v for k, v in PINNED_ENV.items())
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert torch.get_num_threads() == 1
    kernels = environment_report(torch.device("cpu"), data="d").table["value"]["kernels"]
    assert kernels.startswith("pinned: AVX2 kernels, 1 thread")
    assert not cpu_native_bf16(), "under the AVX2 pin bf16 must not count as native"


def test_seed_everything_repeats_draws():
    g1 = seed_everything(3)
    a = torch.rand(3), torch.rand(2, generator=g1)
    g2 = seed_everything(3)
    b = torch.rand(3), torch.rand(2, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_pick_device_honours_preference():
    assert pick_device("cpu") == torch.device("cpu")


def test_report_states_provenance(monkeypatch):
    report = environment_report(
        torch.device("cpu"), data="some digits", pretrained="none", data_note="MNIST: offline"
    )
    values = report.table["value"]
    assert values["device"].startswith("cpu (CPU, ")
    assert values["torch"] == torch.__version__
    assert values["data"] == "some digits"
    assert values["pretrained weights"] == "none"
    assert values["kernels"].startswith("pinned: AVX2 kernels, 1 thread")
    assert values["data note"] == "MNIST: offline"
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")  # one pin no longer as set
    loose = environment_report(torch.device("cpu"), data="d").table["value"]
    assert loose["kernels"].startswith("not pinned") and "data note" not in loose


def test_report_opens_with_one_line_and_folds_the_table():
    """The page shows device, data and weights in words; the table is one click away."""
    report = environment_report(torch.device("cpu"), data="<some> digits", pretrained="none")
    assert report.summary.startswith("Run on cpu (CPU, 1 thread); data: <some> digits")
    html = report._repr_html_()
    assert html.index("<p>") < html.index("<details>") < html.index("<table>")
    assert "&lt;some&gt; digits" in html and "<some>" not in html
    assert all(len(line) <= 79 for line in repr(report).splitlines())
    assert repr(report).splitlines()[0].startswith("Run on cpu")


def test_glue_prints_the_value_where_roles_are_not_rendered(monkeypatch, capsys):
    """Outside a stored run (Jupyter, Colab) the prose shows the key: print the value."""
    from helpers.env import glue

    monkeypatch.delenv("BOOK_STORED_RUN")
    assert glue("test_map", torch.tensor(0.5)) is None
    assert capsys.readouterr().out == "test_map = 0.5\n"


def test_glue_stores_plain_python_numbers(monkeypatch):
    """NumPy 2 reprs np.float64(0.5), which the book's {glue:text} cannot format."""
    import myst_nb
    import numpy as np

    from helpers.env import glue

    seen = {}
    monkeypatch.setenv("BOOK_STORED_RUN", "1")
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: seen.update({name: value}))
    glue("a", np.float64(0.5))
    glue("b", torch.tensor(2))
    assert seen == {"a": 0.5, "b": 2}
    assert type(seen["a"]) is float and type(seen["b"]) is int


def test_script_path_prefers_the_repository_copy(tmp_path, monkeypatch):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "train_ddp.py").write_text("")
    (tmp_path / "_toc.yml").write_text("")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")
    assert str(script_path("train_ddp.py")) == "../scripts/train_ddp.py"


def test_script_path_outside_the_repository(tmp_path, monkeypatch):
    """A chapter alone (Colab) gets the installed copy, or a clear error naming the script."""
    monkeypatch.chdir(tmp_path)
    import helpers.env

    installed = tmp_path / "site" / "helpers"
    (installed / "scripts").mkdir(parents=True)
    (installed / "scripts" / "train_ddp.py").write_text("")
    monkeypatch.setattr(helpers.env, "__file__", str(installed / "env.py"))
    assert script_path("train_ddp.py") == installed / "scripts" / "train_ddp.py"
    with pytest.raises(FileNotFoundError, match="scripts/nope.py"):
        script_path("nope.py")
