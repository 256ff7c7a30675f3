"""The workshop kit: scripts/make_student_notebooks.py, and the schedule in book/teachers.md."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_student_notebooks.py"
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))

spec = importlib.util.spec_from_file_location("make_student_notebooks", SCRIPT)
msn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(msn)


def stream(text: str):
    return new_output("stream", name="stdout", text=text)


def small_notebook() -> nbformat.NotebookNode:
    """Title, a teaching cell with output, exercises with a helper cell and two solutions."""
    cells = [
        new_markdown_cell("# 9. A chapter\n\n**Estimated time:** 5 minutes."),
        new_code_cell("print(1 + 1)", execution_count=1, outputs=[stream("2\n")]),
        new_markdown_cell("## Key points\n\n- Two is one plus one.\n\n## Exercises"),
        new_markdown_cell("**Exercise 1.** Add two and two."),
        new_code_cell(
            "answer = 2 + 2\nprint(answer)",
            execution_count=2,
            outputs=[stream("4\n")],
            metadata={"tags": ["hide-cell", "solution"]},
        ),
        new_code_cell("print('data for exercise 2')", execution_count=3, outputs=[stream("x\n")]),
        new_markdown_cell("**Exercise 2.** Multiply."),
        new_code_cell(
            "print(3 * 3)",
            execution_count=4,
            outputs=[stream("9\n")],
            metadata={"tags": ["hide-cell", "solution", "remove-output"]},
        ),
    ]
    nb = new_notebook(
        cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    )
    nbformat.validate(nb)
    return nb


def test_solutions_are_replaced_and_their_outputs_cleared():
    student, removed = msn.student_copy(small_notebook())
    assert removed == 2
    for i in (4, 7):
        cell = student.cells[i]
        assert cell.source == "# Your solution here"
        assert cell.outputs == []
        assert cell.execution_count is None
    assert student.cells[4].metadata["tags"] == ["solution"]
    assert student.cells[7].metadata["tags"] == ["solution", "remove-output"]


def test_other_exercise_cells_lose_only_their_outputs():
    student, _ = msn.student_copy(small_notebook())
    helper = student.cells[5]
    assert helper.source == "print('data for exercise 2')"
    assert helper.outputs == [] and helper.execution_count is None


def test_cells_before_the_exercises_are_untouched():
    original = small_notebook()
    student, _ = msn.student_copy(original)
    assert len(student.cells) == len(original.cells)
    for i in (0, 1, 2, 3, 6):
        assert student.cells[i] == original.cells[i]
    assert student.cells[1].outputs[0].text == "2\n"
    assert student.metadata == original.metadata
    assert original.cells[4].source.startswith("answer"), "the input notebook must not change"


def test_output_is_valid_and_a_second_pass_changes_nothing():
    once, _ = msn.student_copy(small_notebook())
    nbformat.validate(once)
    twice, removed = msn.student_copy(once)
    assert twice == once
    assert removed == 0


def test_without_an_exercises_heading_only_solutions_change():
    nb = small_notebook()
    nb.cells[2].source = "## Key points\n\n- Two is one plus one."
    student, _ = msn.student_copy(nb)
    assert student.cells[5].outputs[0].text == "x\n"
    assert student.cells[4].source == "# Your solution here"


def test_the_script_writes_files_and_prints_relative_paths(tmp_path):
    source = tmp_path / "in" / "09_chapter.ipynb"
    source.parent.mkdir()
    nbformat.write(small_notebook(), source)
    before = source.read_bytes()
    out = tmp_path / "handout"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(source), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "wrote handout/09_chapter.ipynb (2 solutions removed)\n"
    written = nbformat.read(out / "09_chapter.ipynb", as_version=4)
    nbformat.validate(written)
    assert written.cells[4].source == "# Your solution here"
    assert source.read_bytes() == before, "the chapter itself must not change"


def code_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def student_book(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    command = [sys.executable, str(SCRIPT), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True)
    return out


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_real_chapters_lose_every_solution(student_book, chapter):
    original = nbformat.read(chapter, as_version=4)
    student = nbformat.read(student_book / chapter.name, as_version=4)
    nbformat.validate(student)
    assert len(student.cells) == len(original.cells)
    solutions = [i for i, c in enumerate(original.cells) if "solution" in msn.tags(c)]
    assert solutions, "a chapter without solutions is not a chapter of this book"
    headings = [
        i
        for i, c in enumerate(original.cells)
        if c.cell_type == "markdown" and msn.EXERCISES_HEADING.search(c.source)
    ]
    exercises_start = min(headings + solutions)
    remaining = code_text(student)
    for i in solutions:
        assert student.cells[i].source == "# Your solution here"
        assert student.cells[i].outputs == []
        assert original.cells[i].source.strip() not in remaining
    for i, (a, b) in enumerate(zip(original.cells, student.cells, strict=True)):
        assert a.cell_type == b.cell_type
        if i < exercises_start:  # the teaching part, with its outputs, is kept as it is
            assert a == b


# --- the teachers' page schedules chapters by the time each chapter states ------------------

TIME = re.compile(r"\*\*(?:Estimated time|Time):\*\*\s*(?:about\s+)?(\d+) minutes")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_teachers_page_quotes_each_chapters_estimated_time(chapter):
    first = next(c for c in nbformat.read(chapter, as_version=4).cells if c.cell_type == "markdown")
    stated = TIME.search(first.source)
    assert stated, f"{chapter.name}: no '**Estimated time:** N minutes' in the first cell"
    number = int(chapter.name[:2])
    page = (ROOT / "book" / "teachers.md").read_text()
    overview = page.split("## What there is to teach")[1].split("\n## ")[0]
    rows = [line for line in overview.splitlines() if line.startswith(f"| {number} |")]
    assert len(rows) == 1, f"book/teachers.md: no row for chapter {number} in its chapter table"
    assert f"| {stated.group(1)} min |" in rows[0]
