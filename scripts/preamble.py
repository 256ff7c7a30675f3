"""The one source of every chapter's setup cell: write it, or check that it is current.

Each chapter opens with one collapsed code cell. Its first part, the install block, is the
same in all chapters and comes from here: the repository address (``repository.url`` in
``_config.yml``) and the release this page was executed with (``version`` in
``pyproject.toml``, installed from the tag ``v<version>``), so a change to either is made
once. The rest of the cell, after the line ``# Seed, pick the device, ...``, belongs to the
chapter: it seeds, picks the device and prints the environment report.

    python scripts/preamble.py            # rewrite every chapter's install block
    python scripts/preamble.py --check    # exit 1 naming each chapter that is not current

A changed install block changes the chapter's code, so its digest goes stale: re-execute
(``scripts/execute_notebooks.py``) after a release bump.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SEED_LINE = "# Seed, pick the device, and say where this page's outputs come from.\n"
TAGS = ["hide-input"]

TEMPLATE = """\
# Setup: in Colab, install the book's helpers at the release this page was run
# with (in a clone of the repository they are installed: nothing to do).
import importlib
import importlib.metadata
import os
import subprocess
import sys

try:
    importlib.metadata.version("multilabel-book-helpers")
except importlib.metadata.PackageNotFoundError:  # e.g. a fresh Colab runtime
    repo = "{url}"
    release = "{tag}"  # the release this page was executed with
    # tests set BOOK_HELPERS_SPEC to a wheel built from their checkout
    spec = os.environ.get("BOOK_HELPERS_SPEC", f"git+{{repo}}@{{release}}")
    pip = [sys.executable, "-m", "pip", "install", "-q", spec]
    subprocess.run(pip, check=True)
    importlib.invalidate_caches()

"""


def release_tag(root: Path = ROOT) -> str:
    """The git tag of this release: ``v`` and the package version in pyproject.toml."""
    text = (root / "pyproject.toml").read_text()
    project = text[text.index("[project]") :]
    return "v" + re.search(r'^version = "([^"]+)"', project, re.M).group(1)


def install_block(root: Path = ROOT) -> str:
    """The install block every chapter's setup cell starts with."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    return TEMPLATE.format(url=config["repository"]["url"], tag=release_tag(root))


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def setup_cell_source(cells: list[dict]) -> tuple[str, int]:
    """The current setup code and how many leading code cells hold it (1, or 2 if old).

    The chapter's own part is everything from `SEED_LINE` on; the old two-cell layout
    ("Setup, part 1" and "Setup, part 2") is read too, so the script can convert it.
    """
    code = [c for c in cells if c["cell_type"] == "code"]
    first = "".join(code[0]["source"])
    if first.startswith("# Setup, part 1"):
        second = "".join(code[1]["source"])
        if not second.startswith("# Setup, part 2"):
            raise ValueError("cell after 'Setup, part 1' is not 'Setup, part 2'")
        return SEED_LINE + "".join(_lines(second)[1:]), 2
    if SEED_LINE not in first:
        raise ValueError(f"the first code cell has no line {SEED_LINE.strip()!r}")
    return first[first.index(SEED_LINE) :], 1


def rewrite(notebook: Path, root: Path = ROOT) -> bool:
    """Give `notebook` the current install block in one setup cell; True if it changed."""
    nb = json.loads(notebook.read_text())
    cells = nb["cells"]
    chapter_part, n_old = setup_cell_source(cells)
    index = [i for i, c in enumerate(cells) if c["cell_type"] == "code"][:n_old]
    cell = cells[index[-1]]  # the cell whose output is the report
    new = install_block(root) + chapter_part
    if n_old == 1 and "".join(cell["source"]) == new and cell["metadata"].get("tags") == TAGS:
        return False
    cell["source"] = _lines(new)
    cell["metadata"]["tags"] = list(TAGS)
    if n_old == 2:
        del cells[index[0]]
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def check(notebook: Path, root: Path = ROOT) -> str | None:
    """None when the chapter's setup cell is current, else what is wrong."""
    cells = json.loads(notebook.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    source = "".join(code[0]["source"])
    if not source.startswith(install_block(root)):
        return "its first code cell does not start with the current install block"
    if code[0]["metadata"].get("tags") != TAGS:
        return f"its setup cell's tags are not {TAGS}"
    if any("".join(c["source"]).startswith("# Setup") for c in code[1:]):
        return "it has a second setup cell"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if stale")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    failures = 0
    for nb in notebooks:
        if args.check:
            problem = check(nb)
            if problem:
                failures += 1
                print(f"{nb.name}: {problem}; run python scripts/preamble.py")
        elif rewrite(nb):
            print(f"{nb.name}: setup cell rewritten (re-execute it)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
