"""Every tutorial (and the landing page's example) executes with small settings and checks itself.

A tutorial is a MyST notebook: its ```{code-cell} ipython3``` blocks run in order in one
namespace, with ``EBM_TUTORIAL_QUICK=1`` so each one can pick small settings. Tutorials
assert what they claim (a moment near its closed form, a diagnostic below a threshold).
"""

import os
import pathlib
import re
import subprocess
import sys

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


# Each tutorial runs in a fresh Python process (as a reader runs it, and so one
# tutorial's compiled programs and figures never pile up on another's).
RUNNER = """
import sys, jax, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
jax.config.update("jax_numpy_rank_promotion", "raise")
sys.path.insert(0, sys.argv[1])
from test_tutorials import code_cells
import pathlib
path = pathlib.Path(sys.argv[2])
namespace = {"__name__": "__tutorial__"}
for i, cell in enumerate(code_cells(path)):
    try:
        exec(compile(cell, f"{path.name}[cell {i}]", "exec"), namespace)
    finally:
        plt.close("all")
print("tutorial ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_and_checks_itself(path, tmp_path):
    cells = code_cells(path)
    assert cells, f"{path.name} has no code cells"
    assert any("assert" in c for c in cells), f"{path.name} checks nothing"
    env = {**os.environ, "EBM_TUTORIAL_QUICK": "1", "MPLBACKEND": "Agg"}
    here = str(pathlib.Path(__file__).resolve().parent)
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, here, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"{path.name} failed:\n{out.stderr[-6000:]}"
    assert out.stdout.rstrip().endswith("tutorial ok"), out.stdout[-2000:]


def test_api_reference_lists_every_public_name():
    import composable_ebm as ebm

    api = (DOCS / "api.md").read_text()
    missing = [n for n in ebm.__all__ if f"composable_ebm.{n}" not in api]
    assert not missing, f"docs/api.md does not document {missing}"
