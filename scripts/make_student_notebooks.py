"""Write student copies of the chapters: exercise solutions removed, exercise outputs cleared.

    python scripts/make_student_notebooks.py                      # every notebook in book/
    python scripts/make_student_notebooks.py book/04_training_loop.ipynb --out handout

The copies go to ``_build/student/`` (git-ignored) unless ``--out`` names another folder;
the chapters in ``book/`` are never changed. In each copy:

- every solution cell (tag ``solution``) keeps its place but its code is replaced by a
  placeholder comment, its outputs are cleared and its ``hide-cell`` tag is removed, so the
  empty cell is visible where the student will write;
- every other code cell after the ``## Exercises`` heading has its outputs cleared, so the
  answers do not show there either;
- everything else, including the stored outputs of the teaching cells, is kept: students
  can read the chapter before running it.

Running the script on its own output changes nothing. Hand the folder out as it is, or
upload single notebooks to Colab: their first cell installs the book's helpers.
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "# Your solution here"
EXERCISES_HEADING = re.compile(r"^## Exercises\s*$", re.MULTILINE)


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def clear_outputs(cell) -> None:
    cell.outputs = []
    cell.execution_count = None


def student_copy(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """The student version of `nb` (a new notebook) and the number of solutions removed."""
    nb = copy.deepcopy(nb)
    in_exercises, removed = False, 0
    for cell in nb.cells:
        if cell.cell_type == "markdown" and EXERCISES_HEADING.search(cell.source):
            in_exercises = True
        if cell.cell_type != "code":
            continue
        if "solution" in tags(cell):
            if cell.source != PLACEHOLDER:  # already a student copy: nothing to remove
                removed += 1
            cell.source = PLACEHOLDER
            clear_outputs(cell)
            cell.metadata["tags"] = [t for t in tags(cell) if t != "hide-cell"]
        elif in_exercises:
            clear_outputs(cell)
    nbformat.validate(nb)
    return nb, removed


def shown(path: Path, out: Path) -> str:
    """`path` relative to the project, else to the output folder's parent: no machine paths."""
    path = path.resolve()
    for base in (ROOT, out.resolve().parent):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return path.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every book/*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    for source in notebooks:
        nb, removed = student_copy(nbformat.read(source, as_version=4))
        target = args.out / source.name
        nbformat.write(nb, target)
        print(f"wrote {shown(target, args.out)} ({removed} solutions removed)")


if __name__ == "__main__":
    main()
