"""Sphinx configuration for the minivae documentation.

Build (warnings are errors):  python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import importlib.util
import os
import re
import shutil
import sys

from sphinx.util.fileutil import copy_asset

sys.path.insert(0, os.path.abspath(".."))  # import minivae from this checkout for autodoc
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))  # this site's own extensions

project = "minivae"
author = "minivae contributors"
copyright = "minivae contributors"

extensions = [
    "myst_nb",  # MyST Markdown pages, and notebooks once they are added
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # NumPy-style docstrings
    "sphinx.ext.mathjax",  # equations typeset in the reader's browser by the copy of MathJax below
    "equation_labels",  # docs/_ext: labels beside equation numbers, the Equations page, the highlighted code pages
]

# ----------------------------------------------------------------- MyST and notebooks
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# The notebooks live in ../notebooks, committed without outputs. The build copies them here (docs/notebooks is
# ignored by git) and executes them in quick mode, so the pages show every table and plot. With
# MINIVAE_DOCS_EXECUTED_NOTEBOOKS naming a folder of the same notebooks already executed (the test suite executes
# each once, for its own tests and for this build), the build copies those and shows their outputs as they are.
_NOTEBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "notebooks")
_EXECUTED = os.environ.get("MINIVAE_DOCS_EXECUTED_NOTEBOOKS")
_COPIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notebooks")
os.makedirs(_COPIES, exist_ok=True)


def _is_source_notebook(name):
    # jupyter nbconvert --execute writes NAME.nbconvert.ipynb beside the notebook: an output, not a page
    return name.endswith(".ipynb") and not name.endswith(".nbconvert.ipynb")


_SOURCES = {name for name in os.listdir(_NOTEBOOKS) if _is_source_notebook(name)}
_LACKING = sorted(_SOURCES - set(os.listdir(_EXECUTED))) if _EXECUTED else []
if _LACKING:
    raise FileNotFoundError(f"MINIVAE_DOCS_EXECUTED_NOTEBOOKS: {_EXECUTED} lacks {', '.join(_LACKING)}")
for _name in sorted(os.listdir(_COPIES)):  # a copy whose notebook was renamed or removed would stay a page
    if _name.endswith(".ipynb") and _name not in _SOURCES:
        os.remove(os.path.join(_COPIES, _name))
for _name in sorted(_SOURCES):
    shutil.copyfile(os.path.join(_EXECUTED or _NOTEBOOKS, _name), os.path.join(_COPIES, _name))
os.environ.setdefault("MINIVAE_QUICK", "1")
nb_execution_mode = "off" if _EXECUTED else "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True  # a notebook that fails fails the build

# ----------------------------------------------------------------- equations
numfig = True  # number equations per page prefixed by the page's number: (5.2)
math_numfig = True
numfig_secnum_depth = 1
math_eqref_format = "({number})"

# MathJax is served from the site itself, never from a CDN, so the pages read offline: the `dev` extra installs the
# PyPI package sphinx-mathjax-offline (MathJax 3.2.2, its fonts and extensions), whose files the build copies into
# _static/mathjax below. tests/test_docs.py opens every built page in a headless browser with the network cut.
mathjax_path = "mathjax/tex-chtml.js"


def _mathjax_files():
    spec = importlib.util.find_spec("sphinx-mathjax-offline")  # its folder's name has hyphens: not importable
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the docs serve MathJax from the package sphinx-mathjax-offline, which is not installed: "
                           "pip install -e '.[dev]'")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "static", "mathjax")
    if not os.path.isfile(os.path.join(folder, "tex-chtml.js")):
        raise RuntimeError(f"expected MathJax's tex-chtml.js in {folder}, found none")
    return folder


def _copy_mathjax(app, exception):
    if exception is None and app.builder.format == "html":
        copy_asset(_mathjax_files(), os.path.join(app.outdir, "_static", "mathjax"))


# ----------------------------------------------------------------- autodoc
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True

# ----------------------------------------------------------------- pages
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
# sphinx-book-theme (on pydata-sphinx-theme, the theme of NumPy and SciPy): its fonts and icons come with the
# package, and nothing in the options below loads anything from the network (no launch buttons, no analytics).
html_theme = "sphinx_book_theme"
html_title = "minivae"
html_static_path = ["_static"]
html_css_files = ["minivae.css"]  # display equations scroll inside their own box; labels under equation numbers
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "use_download_button": False,
    "use_fullscreen_button": False,
}
html_last_updated_fmt = None


def _notebook_titles(app, doctree):
    """Notebook pages are titled without their file's number ("1. From the ELBO to code" -> "From the ELBO to
    code"): the sidebar numbers only the chapters, and the notebooks keep their order in their own section."""
    if not app.env.docname.startswith("notebooks/"):
        return
    for title in doctree.findall(lambda node: node.tagname == "title"):
        text = title.astext()
        stripped = re.sub(r"^\d+\.\s+", "", text)
        if stripped != text and title.children and title.children[0].tagname == "#text":
            first = title.children[0]
            title.replace(first, type(first)(re.sub(r"^\d+\.\s+", "", str(first))))
        break


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
    app.connect("doctree-read", _notebook_titles, priority=400)  # before Sphinx records the page's title
    _mathjax_files()  # fail at the start of a build, not after it, when MathJax is missing
    app.connect("build-finished", _copy_mathjax)
