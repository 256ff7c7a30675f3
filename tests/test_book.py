"""The book as a whole: table of contents, stored outputs, setup cells, and a strict build."""

import json
import re
from pathlib import Path

import pytest
import yaml

from scripts import preamble

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
MACHINE_PATH = re.compile(r"(/work/|/root/|/home/[a-z]+/|/tmp/|site-packages|/usr/lib/)")


def toc_files() -> list[str]:
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def code_cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_every_chapter_is_in_the_toc_and_exists():
    listed = toc_files()
    for name in listed:
        assert list(ROOT.glob(name + ".*")), f"{name} is in _toc.yml but no file exists"
    for nb in NOTEBOOKS:
        assert str(nb.relative_to(ROOT).with_suffix("")) in listed, f"{nb.name} is not in _toc.yml"
    assert NOTEBOOKS, "the book has no chapters"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_is_one_collapsed_cell_from_one_source(nb):
    """The first code cell is the setup: its install block comes from scripts/preamble.py.

    The block names the repository of _config.yml and installs the release this page was
    executed with; the rest of the cell seeds, picks the device and prints the report.
    """
    assert preamble.check(nb) is None, f"{nb.name}: {preamble.check(nb)}"
    setup = code_cells(nb)[0]
    text = "".join(setup["source"])
    assert f'repo = "{CONFIG["repository"]["url"]}"' in text
    assert f'release = "{preamble.release_tag()}"' in text
    # checks the installed distribution, not any module named "helpers" a reader may have
    assert 'importlib.metadata.version("multilabel-book-helpers")' in text
    assert "environment_report(" in text and "notebook_setup(" in text
    assert tags(setup) == ["hide-input"] and len(setup["outputs"]) == 1


def test_launch_buttons_open_the_release_the_notebooks_install():
    """Colab opens the notebooks of the tag whose helpers their setup cell installs."""
    assert CONFIG["repository"]["branch"] == preamble.release_tag()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_write_through_helpers_not_by_hand(nb):
    """Output and script paths come from helpers (generated_dir, script_path): a hand-written
    ``../data`` or ``../scripts`` lands outside the working folder in Colab."""
    for i, cell in enumerate(code_cells(nb)):
        text = "".join(cell["source"])
        for bad in ('"../data', '"../scripts', 'data_dir() / "generated"'):
            assert bad not in text, f"code cell {i} builds a path by hand: {bad}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_complete_and_clean(nb):
    for i, cell in enumerate(code_cells(nb)):
        assert cell["execution_count"] is not None, f"code cell {i} was not executed"
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        if "raises-exception" in tags(cell):
            assert errors, f"code cell {i} is tagged raises-exception but stores no error"
        else:
            assert not errors, f"code cell {i} stores an error but is not tagged raises-exception"
        text = json.dumps(cell["outputs"])
        assert not MACHINE_PATH.search(text), f"code cell {i} output shows a machine path"
        results = json.dumps([o for o in cell["outputs"] if o["output_type"] == "execute_result"])
        assert not re.search(r"<(matplotlib|Figure|Line2D|Axes|Text)[^>]*>", results), (
            f"code cell {i} stores an object repr: end the cell with plt.show()"
        )


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_has_exercises_with_hidden_solutions(nb):
    solutions = [c for c in code_cells(nb) if "solution" in tags(c)]
    assert 2 <= len(solutions) <= 4
    assert all("hide-cell" in tags(c) for c in solutions)


@pytest.mark.slow
def test_book_builds_without_warnings(book_build):
    """`jupyter-book build . -W -n --keep-going` must pass with zero warnings.

    The build itself is the session fixture `book_build` (tests/conftest.py), shared with the
    browser test so the book is built once.
    """
    log = book_build.log
    assert book_build.returncode == 0, log[-5000:]
    assert "WARNING" not in log, log[-5000:]
    html = book_build.html
    for name in toc_files():
        page = html / (name + ".html")
        assert page.exists(), f"{page.name} was not built"
    for nb in NOTEBOOKS:
        page = (html / nb.relative_to(ROOT).with_suffix(".html")).read_text()
        colab = (
            "https://colab.research.google.com/github/"
            + CONFIG["repository"]["url"].split("github.com/")[1]
            + f"/blob/{CONFIG['repository']['branch']}/book/{nb.name}"
        )
        assert colab in page, f"{nb.name}: no Colab launch link to {colab}"
