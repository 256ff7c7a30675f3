"""Nothing stale can land: each stored chapter's digest matches the code it depends on.

``scripts/execute_notebooks.py`` records what a chapter ran (``scripts/digest.py``). When a
code cell, a helpers module the chapter imports (directly or through other modules), a
script it runs or the pinned library versions change, the stored outputs may no longer be
what the code produces: this test names the chapter and the file until it is re-executed.
It executes nothing, so it gives the same answer on any CPU.
"""

import json
import shutil
from pathlib import Path

import pytest

from scripts.digest import dependencies, digest, stale

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_run_matches_the_code_it_ran(nb):
    problems = stale(nb)
    assert not problems, (
        f"{nb.name}: stored outputs are stale: {'; '.join(problems)}. Re-execute it: "
        f"python scripts/execute_notebooks.py book/{nb.name}"
    )


def test_dependencies_follow_imports_through_modules_and_scripts():
    code = 'from helpers.train import fit\nscript_path("train_ddp.py")\n'
    files = dependencies(code)
    # train imports checkpoint, distributed, env, inference, metrics; metrics imports labels
    for f in (
        "helpers/train.py",
        "helpers/inference.py",
        "helpers/checkpoint.py",
        "helpers/metrics.py",
        "helpers/labels.py",
        "helpers/env.py",
        "helpers/pins.py",
        "scripts/train_ddp.py",
    ):
        assert f in files, f  # fmt: skip
    assert "helpers/voc.py" not in files
    assert dependencies("from helpers import labels, pins\n")[:2] == [
        "helpers/labels.py",
        "helpers/pins.py",
    ]


def _copy_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for part in ("helpers", "scripts"):
        shutil.copytree(ROOT / part, root / part)
    (root / "constraints.txt").write_text("torch==1\n")
    return root


def _notebook(path: Path, code: str, stored: dict | None) -> Path:
    nb = {
        "cells": [{"cell_type": "code", "source": [code], "metadata": {}, "outputs": []}],
        "metadata": {"book": {"digest": stored}} if stored is not None else {},
    }
    path.write_text(json.dumps(nb))
    return path


def test_a_change_anywhere_below_a_chapter_is_named(tmp_path):
    root = _copy_repo(tmp_path)
    code = "from helpers.metrics import evaluate\n"
    nb = _notebook(tmp_path / "ch.ipynb", code, None)
    assert stale(nb, root) == [
        "no digest stored: the chapter was not executed by scripts/execute_notebooks.py"
    ]
    nb = _notebook(tmp_path / "ch.ipynb", code, digest(nb, root))
    assert stale(nb, root) == []
    labels = root / "helpers" / "labels.py"  # imported by metrics, not by the chapter
    labels.write_text(labels.read_text() + "\n# a comment is a change too\n")
    assert stale(nb, root) == ["helpers/labels.py changed"]
    (root / "constraints.txt").write_text("torch==2\n")
    assert stale(nb, root) == ["helpers/labels.py changed", "constraints.txt changed"]


def test_a_changed_code_cell_is_named_and_prose_is_not(tmp_path):
    root = _copy_repo(tmp_path)
    nb = _notebook(tmp_path / "ch.ipynb", "x = 1\n", None)
    stored = digest(nb, root)
    nb = _notebook(tmp_path / "ch.ipynb", "x = 2\n", stored)
    assert stale(nb, root) == ["code cells changed"]
    nb = _notebook(tmp_path / "ch.ipynb", "x = 1\n", stored)
    cells = json.loads(nb.read_text())
    cells["cells"].append({"cell_type": "markdown", "source": ["new prose"], "metadata": {}})
    nb.write_text(json.dumps(cells))
    assert stale(nb, root) == []
