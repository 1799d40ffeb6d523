"""Sphinx configuration for the minivae documentation.

Build (warnings are errors):  python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import re
import shutil
import sys

sys.path.insert(0, os.path.abspath(".."))  # import minivae from this checkout for autodoc

project = "minivae"
author = "minivae contributors"
copyright = "minivae contributors"

extensions = [
    "myst_nb",  # MyST Markdown pages, and notebooks once they are added
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # NumPy-style docstrings
    "sphinx.ext.mathjax",  # MathJax is loaded by the reader's browser; the build itself is offline
]

# ----------------------------------------------------------------- MyST and notebooks
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# The notebooks live in ../notebooks, committed without outputs. The build copies them here (docs/notebooks is
# ignored by git) and executes them in quick mode, so the pages show every table and plot.
_NOTEBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "notebooks")
_COPIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notebooks")
os.makedirs(_COPIES, exist_ok=True)
for _name in sorted(os.listdir(_NOTEBOOKS)):
    if _name.endswith(".ipynb"):
        shutil.copyfile(os.path.join(_NOTEBOOKS, _name), os.path.join(_COPIES, _name))
os.environ.setdefault("MINIVAE_QUICK", "1")
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True  # a notebook that fails fails the build

# ----------------------------------------------------------------- equations
numfig = True  # number equations per page prefixed by the page's number: (5.2)
math_numfig = True
numfig_secnum_depth = 1
math_eqref_format = "({number})"

# ----------------------------------------------------------------- autodoc
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True

# ----------------------------------------------------------------- pages
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
html_theme = "alabaster"
html_title = "minivae"


# ----------------------------------------------------------------- links from the docstrings
# Docstrings cite derivations as  eq. ``label``  and pages as  ``docs/derivations/kl.md``;  in the API reference
# these become links to the numbered equation and to the page. tests/test_docs.py checks the labels exist.
_EQ_CITE = re.compile(r"eq\.\s+``([a-z0-9][a-z0-9-]*)``")
_PAGE_CITE = re.compile(r"``docs/([\w/-]+)\.md``")


def _link_citations(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        line = _EQ_CITE.sub(r"eq. :eq:`\1`", line)
        lines[i] = _PAGE_CITE.sub(r":doc:`/\1`", line)


def setup(app):
    app.connect("autodoc-process-docstring", _link_citations)
