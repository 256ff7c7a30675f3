"""The comparison of every cell excludes nothing but what legitimately changes between runs.

CI runs every chapter (one mode: its real budget) and nbval compares every cell with its
stored output. These checks keep it that way: no cell may opt out of the comparison, and the
sanitizer may mask only the fields listed here, each with its reason.

Remaining exclusions (the complete list):
- memory addresses (``0x…``): they differ in every process;
- wall-clock timings printed as ``<number> s`` or ``<number> img/s``, and ratios of two timings
  (speed-ups, a benchmark's fit / bare-loop ratio) printed as ``<number>x``: they depend on the
  machine and its load; so do shares of wall-clock time printed as ``<number>% of the time``
  (the time a loop waited for data). Only the number is masked; the rest of the line is
  compared, so a chapter prints a timing-derived number with its unit or not at all.
"""

import configparser
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
# nbval's own opt-outs: none of them may appear in a chapter.
OPT_OUTS = {"nbval-skip", "nbval-ignore-output", "nbval-check-output-off"}
ALLOWED_SANITIZERS = {
    "memory addresses": r"0x[0-9a-fA-F]{6,16}",
    'wall-clock timings, printed by the chapters as "<number> s" or "<number> img/s"': (
        r"\d+(\.\d+)? (s|img/s)\b"
    ),
    'ratios of two wall-clock timings, printed by the chapters as "<number>x"': r"\b\d+(\.\d+)?x\b",
    'shares of wall-clock time, printed by the chapters as "<number>% of the time"': (
        r"\b\d+(\.\d+)?% of the time\b"
    ),
}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_opts_out_of_the_comparison(nb):
    cells = json.loads(nb.read_text())["cells"]
    for i, cell in enumerate(cells):
        tags = set(cell.get("metadata", {}).get("tags", []))
        assert not tags & OPT_OUTS, f"{nb.name} cell {i} is excluded from nbval: {tags & OPT_OUTS}"
        source = "".join(cell.get("source", []))
        assert "# NBVAL_" not in source, f"{nb.name} cell {i} uses an nbval comment marker"


def test_the_sanitizer_masks_only_the_listed_fields():
    config = configparser.ConfigParser(interpolation=None)  # nbval reads the file raw
    config.read(ROOT / "tests" / "nbval_sanitize.cfg")
    found = {section: config[section]["regex"] for section in config.sections()}
    assert found == ALLOWED_SANITIZERS
