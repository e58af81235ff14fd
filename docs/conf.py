"""Sphinx configuration: MyST-NB tutorials (executed at build time), API from docstrings."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "composable_ebm"
author = "composable_ebm developers"
copyright = "2026, composable_ebm developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "sphinx_book_theme"
html_title = "composable_ebm"
html_theme_options = {"show_toc_level": 2}

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

myst_enable_extensions = ["dollarmath", "colon_fence"]
nb_execution_mode = os.environ.get("EBM_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
# stderr in a built page is noise: NumPyro imports tqdm.auto, which warns in a kernel without
# ipywidgets, and progress bars do not render statically. Results are printed to stdout.
nb_output_stderr = "remove"
suppress_warnings = ["mystnb.unknown_mime_type"]
