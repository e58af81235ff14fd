"""The documentation site builds with warnings as errors.

Cells are not executed here (``EBM_DOCS_EXECUTE=off``): tests/test_tutorials.py executes
them. This catches what breaks a build without running anything: a malformed docstring, a
broken cross-reference, a page left out of every table of contents, a bad MyST directive.
"""

import pathlib

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
# Python deprecation warnings raised inside Sphinx and its extensions are theirs to fix;
# Sphinx's own warnings (which -W turns into a failed build) go through its logger.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_docs_build_without_warnings(tmp_path, monkeypatch):
    build = pytest.importorskip("sphinx.cmd.build", reason="install the 'test' extra")
    monkeypatch.setenv("EBM_DOCS_EXECUTE", "off")
    out = tmp_path / "html"
    status = build.build_main(
        [
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(out),
        ]
    )
    assert status == 0, "sphinx-build -W failed: see the warnings above"
    pages = {p.relative_to(out).as_posix() for p in out.rglob("*.html")}
    tutorials = {f"tutorials/{p.stem}.html" for p in (DOCS / "tutorials").glob("*.md")}
    assert {"index.html", "api.html", "changelog.html"} | tutorials <= pages
