"""The publishing workflow: linted like actionlint does, and pointed where the README says.

``.github/workflows/book.yml`` tests the book and publishes its HTML to GitHub Pages the way
the Jupyter Book 1.x docs describe (actions/upload-pages-artifact, then actions/deploy-pages).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def linter() -> list[str]:
    """actionlint if installed, else jactionlint restricted to actionlint's checks."""
    bindir = str(Path(sys.executable).parent)
    for name, args in (("actionlint", []), ("jactionlint", ["--profile", "correctness"])):
        exe = shutil.which(name, path=bindir) or shutil.which(name)
        if exe:
            return [exe, *args]
    pytest.fail("no workflow linter: pip install -r requirements.txt (jactionlint)")


def test_workflows_pass_the_linter():
    assert WORKFLOWS, "no workflow in .github/workflows"
    result = subprocess.run(
        [*linter(), *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def published_url() -> str:
    owner, repo = CONFIG["repository"]["url"].rstrip("/").split("github.com/")[1].split("/")[:2]
    return f"https://{owner}.github.io/{repo}/"


def test_book_workflow_tests_then_deploys_to_pages():
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    build, deploy = flow["jobs"]["test-and-build"], flow["jobs"]["deploy"]
    runs = " ".join(step.get("run", "") for step in build["steps"])
    assert ".ci/run" in runs and "jupyter-book build" in runs
    uses = [step.get("uses", "") for step in build["steps"] + deploy["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    assert deploy["needs"] == "test-and-build"
    # a release tag is published, so the site, its Colab buttons and install line agree
    assert "startsWith(github.ref, 'refs/tags/v')" in deploy["if"]
    assert "v*" in flow[True]["push"]["tags"]  # YAML reads the key `on` as True
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


def test_readme_names_the_published_copy():
    """The README says where the book is published, derived from repository.url."""
    assert published_url() in (ROOT / "README.md").read_text()
