"""helpers.checkpoint: atomic writes, weights-only reads, and damaged files refused by name."""

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.checkpoint import (
    CheckpointError,
    load_checkpoint,
    non_finite_fields,
    save_checkpoint,
)

STATE = {"model": {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}, "epoch": 3,
         "history": [{"loss": 0.5}], "name": "run"}  # fmt: skip


def test_round_trip_is_weights_only(tmp_path):
    path = tmp_path / "sub" / "ck.pt"
    save_checkpoint(path, STATE)
    state = load_checkpoint(path)
    assert state.keys() == STATE.keys() and state["epoch"] == 3 and state["name"] == "run"
    assert torch.equal(state["model"]["w"], STATE["model"]["w"])

    class Evil:
        def __reduce__(self):
            return (print, ("this would run on load",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt.*Weights only load failed"):
        load_checkpoint(tmp_path / "evil.pt")


def test_save_forces_the_file_to_disk_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1]
    )
    save_checkpoint(tmp_path / "ck.pt", {"epoch": 1})
    assert calls == ["fsync", "replace"]
    assert load_checkpoint(tmp_path / "ck.pt") == {"epoch": 1}
    assert not (tmp_path / "ck.pt.tmp").exists()


def test_empty_truncated_and_foreign_files_are_refused_by_name(tmp_path):
    save_checkpoint(tmp_path / "good.pt", STATE)
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    torch.save([1, 2], tmp_path / "list.pt")  # a real torch file, but not a dict
    for name, why in [
        ("empty.pt", "is empty"),
        ("cut.pt", "cannot be read"),
        ("notes.pt", "cannot be read"),
        ("list.pt", "holds a list, not a dict"),
    ]:
        with pytest.raises(CheckpointError, match=f"checkpoint .*{name} {why}"):
            load_checkpoint(tmp_path / name)


def test_non_finite_fields_names_each_bad_value():
    state = {"a": torch.tensor([1.0, float("nan")]), "b": [0.5, float("inf")], "c": 2,
             "d": torch.tensor([1, 2]), "e": {"f": -float("inf")}}  # fmt: skip
    assert non_finite_fields(state) == ["a", "b.1", "e.f"]
    assert non_finite_fields(STATE) == []


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    save_checkpoint(path, STATE)
    return path.read_bytes()


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def loads_unchanged_or_refuses(path) -> None:
    """A damaged file is refused; the only acceptable load is of the exact original state."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err)
        return
    assert same(state, STATE)  # bytes nobody reads (zip padding, timestamps) may change


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_bit_flips_are_refused_never_loaded(saved, tmp_path, data):
    flips = data.draw(st.lists(st.integers(0, len(saved) * 8 - 1), min_size=1, max_size=3))
    damaged = bytearray(saved)
    for bit in flips:
        damaged[bit // 8] ^= 1 << (bit % 8)
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(damaged))
    loads_unchanged_or_refuses(path)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_truncations_are_refused(saved, tmp_path, data):
    size = data.draw(st.integers(0, len(saved) - 1))
    path = tmp_path / "cut.pt"
    path.write_bytes(saved[:size])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(path)
