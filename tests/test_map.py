"""The map in helpers/__init__.py is the truth: every module is on it, imports go the declared
way (up the table, exactly as the may-import column says), a module made for one chapter
serves that chapter only, private names stay private, every public name has a user, and
`__all__` lists what a module defines. The map's words are held where a test can hold
them: no chapter glues a number made by a drawing module, and no function in helpers/ or
scripts/ is longer than 50 lines.

Each failure message says what to change and where, so fixing it takes a minute.
"""

import ast
import contextlib
import json
import re
from pathlib import Path

import pytest

import helpers

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "helpers").glob("*.py") if p.stem != "__init__")

# A public name needs a user: a chapter, a script or another module. Two written rules keep a
# name public without one (tests are not users):
# - a building block: another function of its own module composes it, and a test checks it on
#   its own (for example calibration.clopper_pearson_lower, composed by
#   thresholds_for_precision);
# - a setting: an UPPER_CASE constant that its module reads (a vocabulary, a file format, a
#   download address) and a contributor may look up or change in one place.
TESTS_TEXT = "".join(
    p.read_text() for p in (ROOT / "tests").glob("*.py") if p.name != "test_map.py"
)


def used_inside(module: str, name: str) -> bool:
    tree = ast.parse((ROOT / "helpers" / f"{module}.py").read_text())
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree))


def kept_by_a_rule(module: str, name: str) -> bool:
    if not used_inside(module, name):
        return False
    tested = re.search(rf"\b{name}\b", TESTS_TEXT) is not None
    return name.isupper() or tested


def parse_map() -> dict[str, dict]:
    """The table's rows, in order: concern, chapters, whether "only", may-import set."""
    rows = {}
    for line in helpers.__doc__.splitlines():
        cells = re.split(r"\s{2,}", line.strip())  # columns are two or more spaces apart
        if len(cells) == 4 and cells[0].isidentifier() and cells[0] != "module":
            name, concern, chapters, imports = cells
            rows[name] = {
                "concern": concern,
                "chapters": parse_chapters(chapters.removesuffix(" only")),
                "only": chapters.endswith(" only"),
                "imports": set() if imports.strip() == "-" else set(imports.split(", ")),
            }
    return rows


def parse_chapters(text: str) -> set[int]:
    """'2, 4-6' -> {2, 4, 5, 6}; chapter numbers are the two digits a file name starts with."""
    if text == "-":
        return set()
    chapters = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        chapters |= set(range(int(low), int(high or low) + 1))
    return chapters


def chapter_sources() -> dict[str, list[str]]:
    """Each chapter's code cells, shell and magic lines blanked so that `ast` can read them."""
    sources = {}
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        sources[f"book/{nb.name}"] = [re.sub(r"(?m)^\s*[%!].*$", "", cell) for cell in code]
    return sources


def python_sources() -> dict[str, list[str]]:
    files = sorted((ROOT / "helpers").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    return {str(p.relative_to(ROOT)): [p.read_text()] for p in files}


def references(sources: list[str]) -> set[tuple[str, str]]:
    """(module, name) for every helpers name a file's code imports or reads as an attribute.

    A notebook's cells are read together (an import in the setup cell serves them all); a
    cell that is not valid Python on purpose (a chapter shows broken code) is left out.
    """
    valid = []
    for source in sources:
        try:
            ast.parse(source)
            valid.append(source)
        except SyntaxError:
            pass
    tree = ast.parse("\n".join(valid))
    aliases, found = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "helpers":  # from helpers import distributed
                aliases |= {a.asname or a.name: a.name for a in node.names}
            elif node.module.startswith("helpers."):
                module = node.module.split(".")[1]
                found |= {(module, a.name) for a in node.names}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("helpers.") and a.asname:  # import helpers.train as t
                    aliases[a.asname] = a.name.split(".")[1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.add((aliases[base.id], node.attr))
            elif (  # helpers.train.fit
                isinstance(base, ast.Attribute)
                and isinstance(base.value, ast.Name)
                and base.value.id == "helpers"
            ):
                found.add((base.attr, node.attr))
    return found


def _top_level(module: str) -> list[ast.stmt]:
    return ast.parse((ROOT / "helpers" / f"{module}.py").read_text()).body


def defined_names(module: str) -> set[str]:
    """Every public name a module defines at top level (exceptions included), not imports."""
    names = set()
    for node in _top_level(module):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")} - {"__all__"}


def public_names(module: str) -> set[str]:
    """The defined names that need a user (:func:`defined_names`), less two kinds.

    Left out: exceptions (callers catch them by name) and the classes named in a public
    function's signature (whoever calls the function uses its argument and result types).
    """
    exceptions, in_signatures = set(), set()
    for node in _top_level(module):
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            args = node.args.args + node.args.kwonlyargs
            for annotation in [node.returns] + [a.annotation for a in args]:
                in_signatures |= {n.id for n in ast.walk(annotation or ast.Pass())
                                  if isinstance(n, ast.Name)}  # fmt: skip
        if isinstance(node, ast.ClassDef) and any(
            getattr(b, "id", "").endswith(("Error", "Exception", "Warning")) for b in node.bases
        ):
            exceptions.add(node.name)
    return defined_names(module) - exceptions - in_signatures


MAP = parse_map()
SOURCES = {**python_sources(), **chapter_sources()}
REFERENCES = {path: references(sources) for path, sources in SOURCES.items()}


def test_every_module_is_on_the_map_and_every_row_is_a_module():
    missing = sorted(set(MODULES) - MAP.keys())
    extra = sorted(MAP.keys() - set(MODULES))
    assert not missing, f"add a row for {missing} to the table in helpers/__init__.py"
    assert not extra, f"the table in helpers/__init__.py lists {extra}, which do not exist"


def test_chapters_column_matches_the_chapters_code():
    wrong = []
    for module, row in MAP.items():
        used = {
            int(Path(path).name[:2])
            for path, refs in REFERENCES.items()
            if path.startswith("book/") and any(m == module for m, _ in refs)
        }
        if used != row["chapters"]:
            wrong.append(
                f"{module}: the map says {sorted(row['chapters'])}, the code {sorted(used)}"
            )
    assert not wrong, "fix the chapters column of helpers/__init__.py:\n" + "\n".join(wrong)


def test_imports_go_the_declared_way():
    wrong = []
    for module in MODULES:
        imported = {m for m, _ in REFERENCES[f"helpers/{module}.py"]} - {module}
        if undeclared := imported - MAP.get(module, {}).get("imports", set()):
            wrong.append(f"helpers/{module}.py imports {sorted(undeclared)}")
    assert not wrong, (
        "imports against the map (move the code, or declare the import in helpers/__init__.py "
        "if it keeps the table free of cycles):\n" + "\n".join(wrong)
    )


def test_declared_imports_have_no_cycle():
    def reaches(start: str, seen: tuple[str, ...]) -> None:
        for nxt in MAP[start]["imports"]:
            assert nxt not in seen, f"import cycle in the map: {' -> '.join((*seen, nxt))}"
            reaches(nxt, (*seen, nxt))

    for module in MAP:
        reaches(module, (module,))


def test_no_private_name_is_used_outside_its_module():
    wrong = [
        f"{path} uses helpers.{module}.{name}"
        for path, refs in REFERENCES.items()
        for module, name in sorted(refs)
        if name.startswith("_") and path != f"helpers/{module}.py"
    ]
    assert not wrong, "private names used outside their module (make them public):\n" + "\n".join(
        wrong
    )


def test_every_public_name_has_a_user():
    unused = set()
    for module in MODULES:
        users = {
            name
            for path, refs in REFERENCES.items()
            if path != f"helpers/{module}.py"
            for m, name in refs
            if m == module
        }
        unused |= {f"helpers.{module}.{name}" for name in public_names(module) - users}
    new = sorted(n for n in unused if not kept_by_a_rule(*n.split(".")[1:]))
    assert not new, (
        "public names that no chapter, script or other module uses, and that no written rule "
        "(a building block tested on its own, a setting) keeps public: make them private "
        "(_name), use them, or remove them:\n" + "\n".join(new)
    )


@pytest.mark.parametrize("module", MODULES)
def test_module_docstring_says_why(module):
    tree = ast.parse((ROOT / "helpers" / f"{module}.py").read_text())
    assert ast.get_docstring(tree), f"helpers/{module}.py needs a docstring saying its concern"


@pytest.mark.parametrize("module", MODULES)
def test_all_lists_exactly_what_the_module_defines(module):
    """``__all__`` is the module's public contract: what it defines, nothing it imports."""
    tree = ast.parse((ROOT / "helpers" / f"{module}.py").read_text())
    declared = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "__all__" for t in node.targets)
    ]
    assert declared, f"helpers/{module}.py has no __all__"
    listed = set(ast.literal_eval(declared[0]))
    defined = defined_names(module)
    assert listed == defined, (
        f"helpers/{module}.py: __all__ lacks {sorted(defined - listed)} "
        f"and lists {sorted(listed - defined)} that it does not define"
    )


def test_may_import_column_is_exact():
    """The map's "may import" column lists the helpers modules each module does import."""
    wrong = []
    for module in MODULES:
        imported = {m for m, _ in REFERENCES[f"helpers/{module}.py"]} - {module}
        declared = MAP.get(module, {}).get("imports", set())
        if unused := declared - imported:
            wrong.append(f"{module}: the map lists {sorted(unused)}, which it does not import")
    assert not wrong, "make the may-import column of helpers/__init__.py exact:\n" + "\n".join(
        wrong
    )


def test_no_name_is_imported_from_a_module_that_does_not_define_it():
    """No re-exports: each name is imported from its owner, so the map shows who uses whom."""
    wrong = [
        f"{path} imports {name} from helpers.{module}, which does not define it"
        for path, refs in REFERENCES.items()
        for module, name in sorted(refs)
        if module in MODULES and not name.startswith("_") and name not in defined_names(module)
    ]
    assert not wrong, "import each name from the module that defines it:\n" + "\n".join(wrong)


def test_imports_point_up_the_table():
    """The table's order is a promise: a module imports only modules on rows above it."""
    order = list(MAP)
    wrong = [
        f"{module} may import {other}, which is on a row below it"
        for module, row in MAP.items()
        for other in sorted(row["imports"])
        if other in order and order.index(other) > order.index(module)
    ]
    assert not wrong, "reorder the table in helpers/__init__.py:\n" + "\n".join(wrong)


def test_a_module_for_one_chapter_serves_one_chapter():
    """A row marked "N only" names exactly one chapter (and the chapters column test keeps
    every other chapter from importing it): a second user means the code moves."""
    wrong = [
        f"{module}: marked 'only' but lists chapters {sorted(row['chapters'])}"
        for module, row in MAP.items()
        if row["only"] and len(row["chapters"]) != 1
    ]
    assert not wrong, "\n".join(wrong)


def test_chapter_file_names_start_with_two_digits():
    """The chapters column is read from the first two characters of each notebook's name."""
    wrong = [p for p in SOURCES if p.startswith("book/") and not re.match(r"book/\d\d_", p)]
    assert not wrong, f"name chapter notebooks NN_title.ipynb: {wrong}"


MAX_FUNCTION_LINES = 50


def long_functions() -> list[str]:
    """'path:line name (n lines)' for every function in helpers/ and scripts/ longer than
    MAX_FUNCTION_LINES, counted from its `def` line to its last line (docstring included)."""
    out = []
    for path in sorted((ROOT / "helpers").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    out.append(f"{where} {node.name} ({n} lines)")
    return out


def test_every_function_fits_on_one_screen():
    """CONTRIBUTING promises functions of at most 50 lines, so each reads on one screen."""
    offenders = long_functions()
    assert not offenders, (
        f"functions longer than {MAX_FUNCTION_LINES} lines (split them):\n" + "\n".join(offenders)
    )


DRAWING = ("plots", "widgets")


def glued_from_drawing(sources: list[str]) -> list[str]:
    """Names a chapter binds from a call into ``plots`` or ``widgets`` and then passes to
    ``glue`` or an ``assert``: a number reported out of a module that only draws."""
    valid = []
    for source in sources:
        with contextlib.suppress(SyntaxError):  # a cell that shows broken code on purpose
            valid.append(ast.parse(source))
    drawing, bound = set(), set()
    for tree in valid:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in {
                f"helpers.{m}" for m in DRAWING
            }:
                drawing |= {a.asname or a.name for a in node.names}
    for tree in valid:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) in drawing
            ):
                bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for tree in valid:
        for node in ast.walk(tree):
            checked = None
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "glue":
                checked = node.args[1:] + [k.value for k in node.keywords]
            elif isinstance(node, ast.Assert):
                checked = [node.test]
            for part in checked or []:
                found += [n.id for n in ast.walk(part) if isinstance(n, ast.Name) and n.id in bound]
    return sorted(set(found))


def test_nothing_a_chapter_glues_comes_from_a_drawing_module():
    """The map's words: plots and widgets only draw, so no glued or asserted number comes
    out of them (compute it with the module that owns it, then draw it)."""
    wrong = [
        f"{path}: {', '.join(names)}"
        for path, sources in chapter_sources().items()
        if (names := glued_from_drawing(sources))
    ]
    assert not wrong, (
        "chapters glue or assert values made by helpers.plots / helpers.widgets:\n"
        + "\n".join(wrong)
    )
