import pytest
import torch

from helpers.env import (
    environment_report,
    pick_device,
    quick_mode,
    script_path,
    seed_everything,
)


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("yes", True), ("0", False), ("", False)]
)
def test_quick_mode_reads_the_variable(monkeypatch, value, expected):
    monkeypatch.setenv("BOOK_QUICK", value)
    assert quick_mode() is expected


def test_seed_everything_repeats_draws():
    g1 = seed_everything(3)
    a = torch.rand(3), torch.rand(2, generator=g1)
    g2 = seed_everything(3)
    b = torch.rand(3), torch.rand(2, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_pick_device_honours_preference():
    assert pick_device("cpu") == torch.device("cpu")


def test_report_states_provenance(monkeypatch):
    monkeypatch.setenv("BOOK_QUICK", "1")
    report = environment_report(
        torch.device("cpu"), data="some digits", pretrained="none", data_note="MNIST: offline"
    )
    values = report["value"]
    assert values["device"].startswith("cpu (CPU, ")
    assert values["torch"] == torch.__version__
    assert values["data"] == "some digits"
    assert values["pretrained weights"] == "none"
    assert values["mode"].startswith("quick")
    assert values["data note"] == "MNIST: offline"
    monkeypatch.setenv("BOOK_QUICK", "0")
    full = environment_report(torch.device("cpu"), data="d")["value"]
    assert full["mode"] == "full" and "data note" not in full


def test_glue_is_a_no_op_without_myst_nb(monkeypatch):
    import builtins

    from helpers.env import glue

    real_import = builtins.__import__

    def no_myst(name, *args, **kwargs):
        if name == "myst_nb":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst)
    assert glue("x", 1.0) is None


def test_glue_stores_plain_python_numbers(monkeypatch):
    """NumPy 2 reprs np.float64(0.5), which the book's {glue:text} cannot format."""
    import myst_nb
    import numpy as np

    from helpers.env import glue

    seen = {}
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
