"""Every tutorial (and the landing page's example) executes with small settings and checks itself.

A tutorial is a MyST notebook: its ```{code-cell} ipython3``` blocks run in order in one
namespace, with ``EBM_TUTORIAL_QUICK=1`` so each one can pick small settings. Tutorials
assert what they claim (a moment near its closed form, a diagnostic below a threshold).
"""

import os
import pathlib
import re

import matplotlib
import pytest

matplotlib.use("Agg")

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
# The tutorials, and the landing page, whose example draws the site's first figure.
TUTORIALS = [DOCS / "index.md", *sorted((DOCS / "tutorials").glob("*.md"))]
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)


def code_cells(path: pathlib.Path) -> list[str]:
    cells = []
    for body in CELL.findall(path.read_text()):
        lines = [ln for ln in body.splitlines() if not ln.startswith(":")]  # cell options
        cells.append("\n".join(lines))
    return cells


def test_tutorials_exist():
    assert TUTORIALS, "no tutorials found"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_and_checks_itself(path, monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("EBM_TUTORIAL_QUICK", "1")
    monkeypatch.chdir(tmp_path)
    cells = code_cells(path)
    assert cells, f"{path.name} has no code cells"
    assert any("assert" in c for c in cells), f"{path.name} checks nothing"
    namespace: dict = {"__name__": "__tutorial__"}
    for i, cell in enumerate(cells):
        try:
            exec(compile(cell, f"{path.name}[cell {i}]", "exec"), namespace)
        finally:
            plt.close("all")
    assert os.environ["EBM_TUTORIAL_QUICK"] == "1"


def test_api_reference_lists_every_public_name():
    import composable_ebm as ebm

    api = (DOCS / "api.md").read_text()
    missing = [n for n in ebm.__all__ if f"composable_ebm.{n}" not in api]
    assert not missing, f"docs/api.md does not document {missing}"
