"""What each stored chapter ran: a digest of its code and of every file that code depends on.

    python scripts/digest.py                    # check every chapter; exit 1 if one is stale
    python scripts/digest.py book/05_*.ipynb    # check some

A stored page is only as true as the code that made it. ``scripts/execute_notebooks.py``
records, in the notebook's metadata (``book.digest``), a SHA-256 of

- the chapter's code cells (their source, in order; prose is not part of it),
- every ``helpers`` module the chapter imports, followed through the modules they import,
- every script of ``scripts/`` the chapter names (``script_path("train_ddp.py")``), with the
  helpers modules it imports,
- ``constraints.txt``: the library versions the stored runs and CI install.

The data are made by code (``helpers.data`` and friends), so the code that makes them is in
the list. The check needs no execution: it reads files and compares, on any machine, and
names the chapter and each file that changed since the stored run.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("constraints.txt",)  # files every stored run depends on
_MODULE = re.compile(r"\bhelpers\.(\w+)")
_FROM_PACKAGE = re.compile(r"\bfrom\s+helpers\s+import\s+\(?([\w\s,]+)\)?")
_SCRIPT = re.compile(r"[\"'/](\w+\.py)[\"']")


def code_of(notebook: Path) -> str:
    """The chapter's code cells, in order, as one text."""
    cells = json.loads(notebook.read_text())["cells"]
    return "\n# ---- cell ----\n".join(
        "".join(c["source"]) for c in cells if c["cell_type"] == "code"
    )


def helpers_named(code: str, root: Path) -> set[str]:
    """The helpers modules a piece of code imports (``helpers.x`` or ``from helpers import x``)."""
    names = set(_MODULE.findall(code))
    for group in _FROM_PACKAGE.findall(code):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    return {n for n in names if (root / "helpers" / f"{n}.py").exists()}


def dependencies(code: str, root: Path = ROOT) -> list[str]:
    """Every file (relative to `root`) whose bytes the outputs of `code` depend on."""
    scripts = {f"scripts/{n}" for n in _SCRIPT.findall(code) if (root / "scripts" / n).exists()}
    todo = set(helpers_named(code, root))
    for script in scripts:
        todo |= helpers_named((root / script).read_text(), root)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= helpers_named((root / "helpers" / f"{name}.py").read_text(), root) - seen
    files = sorted(f"helpers/{n}.py" for n in seen) + sorted(scripts)
    return files + [f for f in SHARED if (root / f).exists()]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def digest(notebook: Path, root: Path = ROOT) -> dict[str, str]:
    """``{"code cells": sha, "helpers/x.py": sha, ...}`` for the notebook as it is now."""
    code = code_of(notebook)
    found = {"code cells": _sha(code.encode())}
    found.update({f: _sha((root / f).read_bytes()) for f in dependencies(code, root)})
    return found


def stored(notebook: Path) -> dict[str, str]:
    return json.loads(notebook.read_text())["metadata"].get("book", {}).get("digest", {})


def stale(notebook: Path, root: Path = ROOT) -> list[str]:
    """What changed since the stored run: one phrase per file ([] when the digest matches)."""
    old, new = stored(notebook), digest(notebook, root)
    if not old:
        return ["no digest stored: the chapter was not executed by scripts/execute_notebooks.py"]
    changed = [f"{k} changed" for k in new if k in old and old[k] != new[k]]
    added = [f"{k} is new to the chapter" for k in new if k not in old]
    gone = [f"{k} is no longer used" for k in old if k not in new]
    return changed + added + gone


def main(paths: list[str]) -> int:
    notebooks = [Path(p) for p in paths] or sorted((ROOT / "book").glob("*.ipynb"))
    bad = 0
    for nb in notebooks:
        problems = stale(nb)
        name = nb.resolve().relative_to(ROOT)
        if problems:
            bad += 1
            print(f"{name}: STALE ({'; '.join(problems)}): re-execute it with "
                  f"scripts/execute_notebooks.py {name}")  # fmt: skip
        else:
            print(f"{name}: digest matches ({len(stored(nb)) - 1} files)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
